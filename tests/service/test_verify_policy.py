"""POST /v1/verify holds the token's identifier to the app's userid policy (code 13)."""

from __future__ import annotations

from typing import Any

import pytest
import TLSSigAPIv2
from aiohttp.test_utils import TestClient

from tests.core.hostile import signed_v1
from tests.service.conftest import (
    SECRET,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    write_config,
)

# Userids Tencent's own library signs without complaint, and the words the refusal must
# use to name the rule they break.
POLICY_BREAKERS = {
    "newline forges a signed line": ("alice\nTLS.sdkappid:1", "U+000A at position 5"),
    "line separator": ("line\u2028sep", "U+2028 at position 4"),
    "over 32 bytes": ("x" * 33, "33 bytes in UTF-8; the limit is 32"),
}


async def _verify(
    client: TestClient, deployment: Deployment, sdkappid: int, userid: str, token: str
) -> dict[str, Any]:
    response = await client.post(
        "/v1/verify",
        json={"sdkappid": sdkappid, "userid": userid, "usersig": token},
        headers=deployment.headers(),
    )
    assert response.status == 200
    return dict(await response.json())


class TestVerifyUseridPolicy:
    @pytest.mark.parametrize(
        ("userid", "rule"), list(POLICY_BREAKERS.values()), ids=list(POLICY_BREAKERS)
    )
    async def test_tencent_v2_token_breaking_the_policy_is_code_13(
        self, client: TestClient, deployment: Deployment, userid: str, rule: str
    ) -> None:
        """A token Tencent's library minted for a policy-breaking userid is refused with 13,
        even when the caller expects that very userid, and the reason names the rule."""
        token = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig(userid, 86400)
        report = await _verify(client, deployment, V2_APP, userid, token)
        assert (report["ok"], report["code"]) == (False, 13)
        assert "userid policy" in report["reason"] and rule in report["reason"]
        assert report["identifier"] == userid  # what the token says is still reported

    @pytest.mark.parametrize(
        ("userid", "rule"), list(POLICY_BREAKERS.values()), ids=list(POLICY_BREAKERS)
    )
    async def test_signed_v1_token_breaking_the_policy_is_code_13(
        self, client: TestClient, deployment: Deployment, userid: str, rule: str
    ) -> None:
        """The same holds for a v1 token genuinely signed with the app's ECDSA key."""
        token = signed_v1(deployment.v1_key, userid, V1_APP, 2_000_000_000)
        report = await _verify(client, deployment, V1_APP, userid, token)
        assert (report["ok"], report["code"]) == (False, 13)
        assert "userid policy" in report["reason"] and rule in report["reason"]

    async def test_byte_limit_is_the_apps_own(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """An app configured with max_userid_bytes = 40 verifies a 33-byte userid's token."""
        roomy = write_config(
            deployment.directory, name="roomy.toml", apps={V2_APP: {"max_userid_bytes": 40}}
        )
        assert "max_userid_bytes = 40" in roomy.read_text()
        client = await make_client(roomy)
        token = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("x" * 33, 86400)
        report = await _verify(client, deployment, V2_APP, "x" * 33, token)
        assert (report["ok"], report["code"], report["identifier"]) == (True, 0, "x" * 33)
        longer = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("x" * 41, 86400)
        report = await _verify(client, deployment, V2_APP, "x" * 41, longer)
        assert report["code"] == 13 and "41 bytes in UTF-8; the limit is 40" in report["reason"]

    async def test_expected_userid_breaking_the_policy_is_named(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Expecting a userid the app could never issue is refused with 13, saying why."""
        token = TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("alice", 86400)
        report = await _verify(client, deployment, V2_APP, "alice\nTLS.sdkappid:1", token)
        assert (report["ok"], report["code"]) == (False, 13)
        assert "expected userid" in report["reason"]
        assert "U+000A at position 5" in report["reason"]

"""POST and GET /v1/usersig issue tokens the app's key verifies, userbuf included, and refuse
every malformed field or query parameter with a 422 naming it."""

from __future__ import annotations

import base64

import pytest
import TLSSigAPIv2
from aiohttp.test_utils import TestClient

from signer.core import decode, verify
from signer.service.handlers import STATE
from tests.service.conftest import (
    API_KEY,
    OTHER_APP,
    SECRET,
    V1_APP,
    V2_APP,
    Deployment,
    expect_error,
)


class TestIssue:
    """Tokens issued by POST and GET, and served again from the cache."""

    async def test_post_issues_a_verifiable_token_then_serves_it_from_cache(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A fresh token the first time, the same token from cache the second."""
        body = {"sdkappid": V1_APP, "userid": "alice"}
        first = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert first.status == 200
        assert first.headers["Cache-Control"] == "no-store"
        data = await first.json()
        assert set(data) == {
            "usersig",
            "sdkappid",
            "userid",
            "issued_at",
            "expires_at",
            "key_version",
            "cached",
        }
        assert (data["userid"], data["key_version"], data["cached"]) == ("alice", "2", False)
        assert data["expires_at"] - data["issued_at"] == 86400  # the app's default_expire
        verify(data["usersig"], userid="alice", sdkappid=V1_APP, key=deployment.v1_key.public_key())
        again = await (
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
        ).json()
        assert again["cached"] is True and again["usersig"] == data["usersig"]

    async def test_get_is_the_same_operation(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """GET with query parameters issues the same token as POST, for the expire asked."""
        response = await client.get(
            "/v1/usersig",
            params={"sdkappid": str(V2_APP), "userid": "bob", "expire": "600"},
            headers=deployment.headers(),
        )
        data = await response.json()
        assert response.status == 200 and data["expires_at"] - data["issued_at"] == 600
        verify(data["usersig"], userid="bob", sdkappid=V2_APP, key=deployment.secret)

    async def test_v2_matches_tencents_library(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Same fields as tls-sig-api-v2 would issue; its TLS.sig for our issue time is ours.
        The service signs v2 in its workers, as v1 (inline HMAC cost the loop more)."""
        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "中文", "expire": 3600},
                headers=deployment.headers(),
            )
        ).json()
        ours = decode(data["usersig"])
        # The library reads the clock as ``time.time``: the process's own, put back after.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(TLSSigAPIv2.time, "time", lambda: ours["TLS.time"])
            theirs = decode(TLSSigAPIv2.TLSSigAPIv2(V2_APP, SECRET).gen_sig("中文", 3600))
        assert ours == theirs
        assert client.app[STATE].engine.stats.signed_inline == 0

    async def test_other_app_inline_secret(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """An app whose secret is inline in the config file signs tokens that secret verifies."""
        from signer.core import HmacSecret

        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": OTHER_APP, "userid": "z"},
                headers=deployment.headers(API_KEY),
            )
        ).json()
        verify(data["usersig"], userid="z", sdkappid=OTHER_APP, key=HmacSecret(b"another-secret"))


class TestUserbuf:
    """The userbuf a caller sends, inside the token."""

    async def test_userbuf_is_embedded(self, client: TestClient, deployment: Deployment) -> None:
        """A base64 userbuf is embedded in the token and read back by verify."""
        userbuf = base64.b64encode(b"\x00\x01opaque").decode()
        data = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V1_APP, "userid": "u", "userbuf": userbuf},
                headers=deployment.headers(),
            )
        ).json()
        checked = verify(
            data["usersig"], userid="u", sdkappid=V1_APP, key=deployment.v1_key.public_key()
        )
        assert checked.userbuf == userbuf

    async def test_empty_userbuf_is_not_the_same_token_as_none(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """An empty userbuf is a token of its own, never the cached token without one."""
        plain = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "ub"},
                headers=deployment.headers(),
            )
        ).json()
        empty = await (
            await client.post(
                "/v1/usersig",
                json={"sdkappid": V2_APP, "userid": "ub", "userbuf": ""},
                headers=deployment.headers(),
            )
        ).json()
        assert empty["cached"] is False and empty["usersig"] != plain["usersig"]


class TestFields:
    """Body fields out of their rules: 422 naming the field."""

    @pytest.mark.parametrize(
        ("body", "code", "field"),
        [
            ({"sdkappid": V1_APP, "userid": "a\nb"}, "invalid_userid", "userid"),
            ({"sdkappid": V1_APP, "userid": "x" * 33}, "invalid_userid", "userid"),
            ({"sdkappid": V1_APP, "userid": "u", "expire": 10}, "invalid_expire", "expire"),
            ({"sdkappid": V1_APP, "userid": "u", "expire": 0}, "invalid_field", "expire"),
            ({"sdkappid": "1400000001", "userid": "u"}, "invalid_field", "sdkappid"),
            ({"sdkappid": V1_APP}, "invalid_field", "userid"),
            ({"sdkappid": V1_APP, "userid": "u", "surprise": 1}, "invalid_field", "surprise"),
            ({"sdkappid": V1_APP, "userid": "u", "userbuf": "%%%"}, "invalid_field", "userbuf"),
        ],
    )
    async def test_invalid_fields_are_422_naming_the_field(
        self,
        client: TestClient,
        deployment: Deployment,
        body: dict[str, object],
        code: str,
        field: str,
    ) -> None:
        """Each invalid or unknown field is 422 with its code and the field's name."""
        r = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert (await expect_error(r, 422, code))["field"] == field

    @pytest.mark.parametrize(
        ("method", "expire"),
        [("POST", 1e23), ("POST", 1.5), ("POST", 2**32), ("POST", "600"), ("GET", "9" * 5000)],
    )
    async def test_an_integer_out_of_any_range_is_told_its_range(
        self, client: TestClient, deployment: Deployment, method: str, expire: object
    ) -> None:
        """Whatever is wrong with an integer (too large for 32 bits or for any integer, a
        fraction, a string in JSON), the 422 says the range the field takes.

        Catches: pydantic's own wording ("Input should be a valid integer", "exceeded
        maximum size"), which does not tell the client what to send."""
        if method == "GET":
            r = await client.get(
                f"/v1/usersig?sdkappid={V1_APP}&userid=u&expire={expire}",
                headers=deployment.headers(),
            )
        else:
            body = {"sdkappid": V1_APP, "userid": "u", "expire": expire}
            r = await client.post("/v1/usersig", json=body, headers=deployment.headers())
        assert r.status == 422, await r.text()
        error = (await r.json())["error"]
        assert error["field"] == "expire"
        assert error["message"] == "expire: must be a whole number from 1 to 4294967295"


class TestGetQuery:
    """The query string of GET /v1/usersig, read as strictly as a body."""

    async def test_get_rejects_query_bytes_that_are_not_utf8(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A GET whose query holds bytes that are not UTF-8 is 422."""
        r = await client.get(
            f"/v1/usersig?sdkappid={V1_APP}&userid=%FF", headers=deployment.headers()
        )
        assert r.status == 422

    @pytest.mark.parametrize(
        "sdkappid", ["+1400000001", "1_400_000_001", " 1400000001", "1400000001.0"]
    )
    async def test_get_takes_plain_digits_only(
        self, client: TestClient, deployment: Deployment, sdkappid: str
    ) -> None:
        """A GET sdkappid with a sign, underscores, a space or a fraction is 422: plain digits
        only."""
        r = await client.get(
            "/v1/usersig",
            params={"sdkappid": sdkappid, "userid": "u"},
            headers=deployment.headers(),
        )
        assert r.status == 422

    async def test_get_refuses_a_repeated_query_parameter(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """``?userid=a&userid=b`` is 422 naming the parameter: which userid was meant is
        unknown, so neither is signed.

        Catches: the first (or last) value quietly used, as a plain dict of the query
        would."""
        r = await client.get(
            f"/v1/usersig?sdkappid={V1_APP}&userid=a&userid=b", headers=deployment.headers()
        )
        assert r.status == 422, await r.text()
        error = (await r.json())["error"]
        assert (error["code"], error["field"]) == ("invalid_field", "userid")
        assert "'userid' is given more than once" in error["message"]

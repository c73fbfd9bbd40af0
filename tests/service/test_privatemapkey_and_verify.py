"""POST /v1/privatemapkey issues room tokens with their privilege, and POST /v1/verify tells a
good token from every reason one fails, old keys included."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from signer.core import verify
from tests.service.conftest import (
    V1_APP,
    V2_APP,
    Deployment,
)


class TestPrivateMapKey:
    @pytest.mark.parametrize("room", [{"room_id": 1234}, {"room_str": "会议室"}])
    async def test_privatemapkey(
        self, client: TestClient, deployment: Deployment, room: dict[str, object]
    ) -> None:
        """A PrivateMapKey for a numeric or a string room carries the privilege asked for."""
        data = await (
            await client.post(
                "/v1/privatemapkey",
                json={"sdkappid": V2_APP, "userid": "u", "privilege": 5, **room},
                headers=deployment.headers(),
            )
        ).json()
        checked = verify(data["usersig"], userid="u", sdkappid=V2_APP, key=deployment.secret)
        assert checked.privilege_map is not None and checked.privilege_map.privilege == 5

    async def test_privatemapkey_needs_one_room(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A PrivateMapKey request naming no room is 422."""
        response = await client.post(
            "/v1/privatemapkey",
            json={"sdkappid": V2_APP, "userid": "u"},
            headers=deployment.headers(),
        )
        assert response.status == 422


class TestVerify:
    async def test_verify_ok_and_the_reasons_it_fails(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """/v1/verify reports a good token as ok, and a wrong userid, an expired token or
        garbage with Tencent's code."""
        token = (
            await (
                await client.post(
                    "/v1/usersig",
                    json={"sdkappid": V1_APP, "userid": "carol"},
                    headers=deployment.headers(),
                )
            ).json()
        )["usersig"]

        async def check(**body: object) -> dict[str, object]:
            response = await client.post(
                "/v1/verify", json={"sdkappid": V1_APP, **body}, headers=deployment.headers()
            )
            assert response.status == 200
            return dict(await response.json())

        ok = await check(userid="carol", usersig=token)
        assert (ok["ok"], ok["code"], ok["identifier"], ok["key_version"]) == (
            True,
            0,
            "carol",
            "2",
        )
        wrong_user = await check(userid="dave", usersig=token)
        assert (wrong_user["ok"], wrong_user["code"], wrong_user["identifier"]) == (
            False,
            13,
            "carol",
        )
        expired = await check(userid="carol", usersig=token, now=2**32 - 1)
        assert expired["code"] == 9 and expired["expires_at"]
        garbage = await check(userid="carol", usersig="not a token")
        assert garbage["code"] == 2

    async def test_verify_accepts_tokens_of_the_previous_key(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """During a rotation, tokens signed with the old key still verify, and say so."""
        from signer.core import V1Signer

        old_token = V1Signer(V1_APP, deployment.old_v1_key).sign("erin").usersig
        data = await (
            await client.post(
                "/v1/verify",
                json={"sdkappid": V1_APP, "userid": "erin", "usersig": old_token},
                headers=deployment.headers(),
            )
        ).json()
        assert (data["ok"], data["key_version"]) == (True, "1")

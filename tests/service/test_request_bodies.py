"""A request body is read only when it is JSON, within its size cap once decompressed, in a
content coding the service undoes, and sent in time."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from aiohttp.test_utils import TestClient
from multidict import CIMultiDict

from tests.service.conftest import (
    API_KEY,
    V2_APP,
    ClientFactory,
    Deployment,
    expect_error,
    write_config,
)


class TestBodyFormat:
    """Bodies that are not a JSON object, not JSON, or too large."""

    async def test_malformed_json_is_400(self, client: TestClient, deployment: Deployment) -> None:
        """A body that is not a JSON object (broken syntax, or an array) is 400 malformed_json."""
        r = await client.post(
            "/v1/usersig",
            data=b"{nope",
            headers={**deployment.headers(), "Content-Type": "application/json"},
        )
        await expect_error(r, 400, "malformed_json")
        r = await client.post(
            "/v1/usersig",
            data=b"[1]",
            headers={**deployment.headers(), "Content-Type": "application/json"},
        )
        await expect_error(r, 400, "malformed_json")

    async def test_not_json_is_415(self, client: TestClient, deployment: Deployment) -> None:
        """A body that is not application/json is 415 unsupported_media_type."""
        r = await client.post(
            "/v1/usersig",
            data="sdkappid=1",
            headers={**deployment.headers(), "Content-Type": "application/x-www-form-urlencoded"},
        )
        await expect_error(r, 415, "unsupported_media_type")

    async def test_body_over_the_cap_is_413(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """A body over server.max_body_bytes is 413 body_too_large."""
        big = {"sdkappid": V2_APP, "userids": ["x" * 30] * 4000}
        await expect_error(
            await client.post("/v1/usersig/batch", json=big, headers=deployment.headers()),
            413,
            "body_too_large",
        )


class TestContentEncoding:
    """Compressed bodies: inflated, capped, or refused by name."""

    @pytest.mark.parametrize(
        ("encoding", "status", "code"),
        [("gzip", 400, "malformed_body"), ("compress", 415, "unsupported_content_encoding")],
    )
    async def test_a_body_not_in_its_content_encoding_is_refused(
        self, client: TestClient, deployment: Deployment, encoding: str, status: int, code: str
    ) -> None:
        """Plain JSON labelled gzip cannot be inflated (400); a coding the service cannot
        undo is refused by name (415, RFC 9110), not parsed as if it were plain JSON."""
        r = await client.post(
            "/v1/usersig",
            data=b'{"sdkappid": 1400000002, "userid": "a"}',
            headers={
                **deployment.headers(),
                "Content-Type": "application/json",
                "Content-Encoding": encoding,
            },
        )
        error = (await r.json())["error"]
        assert r.status == status and error["code"] == code
        if status == 415:
            assert "gzip" in error["message"] and encoding in error["message"]

    @pytest.mark.parametrize(
        ("codings", "status"), [([""], 200), (["identity"], 200), (["gzip", "compress"], 415)]
    )
    async def test_content_encoding_headers_are_all_checked(
        self, client: TestClient, deployment: Deployment, codings: list[str], status: int
    ) -> None:
        """An empty coding is none; with two headers aiohttp would undo only one, so a
        second (unsupported or different) coding is refused, whichever header it is in."""
        headers = CIMultiDict({**deployment.headers(), "Content-Type": "application/json"})
        for coding in codings:
            headers.add("Content-Encoding", coding)
        r = await client.post(
            "/v1/usersig", data=b'{"sdkappid": 1400000002, "userid": "a"}', headers=headers
        )
        assert r.status == status

    @pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
    async def test_compressed_bodies_are_read_and_bombs_are_413(
        self, client: TestClient, deployment: Deployment, encoding: str
    ) -> None:
        """A compressed body is accepted; one that inflates past max_body_bytes is a 413,
        whatever its compressed size (the cap counts decompressed bytes)."""
        import zlib

        import brotli

        try:
            from compression import zstd  # type: ignore[import-not-found, unused-ignore]
        except ImportError:  # before Python 3.14
            from backports import zstd  # type: ignore[no-redef, unused-ignore]

        def pack(data: bytes) -> bytes:
            if encoding == "br":
                return bytes(brotli.compress(data))
            if encoding == "zstd":
                return zstd.compress(data)
            wbits = 31 if encoding == "gzip" else 15
            compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
            return compressor.compress(data) + compressor.flush()

        headers = {
            **deployment.headers(),
            "Content-Type": "application/json",
            "Content-Encoding": encoding,
        }
        body = json.dumps({"sdkappid": V2_APP, "userid": "zipped"}).encode()
        r = await client.post("/v1/usersig", data=pack(body), headers=headers)
        assert r.status == 200 and (await r.json())["userid"] == "zipped"
        bomb = pack(b'{"sdkappid": 1400000002, "userid": "' + b" " * (8 << 20) + b'"}')
        assert len(bomb) < 64 * 1024  # under the cap as sent
        r = await client.post("/v1/usersig", data=bomb, headers=headers)
        assert r.status == 413 and (await r.json())["error"]["code"] == "body_too_large"


class TestSlowBodies:
    async def test_a_trickled_body_gets_408_and_a_prompt_one_is_untimed(
        self, make_client: ClientFactory, deployment: Deployment
    ) -> None:
        """A client that stops sending half-way through its body is answered 408 (JSON)
        after server.body_timeout instead of holding the request open for ever."""
        slow = write_config(deployment.directory, name="slow.toml", server={"body_timeout": 0.3})
        client = await make_client(slow)
        assert client.port is not None
        reader, writer = await asyncio.open_connection(client.host, client.port)
        body = json.dumps({"sdkappid": V2_APP, "userid": "slow"}).encode()
        writer.write(
            b"POST /v1/usersig HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        started = time.monotonic()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        assert 0.25 <= time.monotonic() - started < 3
        assert head.startswith(b"HTTP/1.1 408")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        error = json.loads(await reader.readexactly(length))["error"]
        assert error["code"] == "body_timeout"
        writer.close()
        # The same server still answers a normal request at once.
        ok = await client.post(
            "/v1/usersig", json={"sdkappid": V2_APP, "userid": "fast"}, headers=deployment.headers()
        )
        assert ok.status == 200

"""hiredis command packing for redis-py's asyncio connections."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from signer.cache.backends.packing import HiredisPacking, use_hiredis_packing
from tests.support import RedisServer


class HiredisConnection(HiredisPacking, Connection):
    pass


def packed(connection: Connection, *args: object) -> bytes:
    return b"".join(connection.pack_command(*args))


class TestPacking:
    @pytest.mark.parametrize(
        "args",
        [
            ("MGET", *(f"signer:{{1400000001:用户{i}}}:1~ab:86400:".encode() for i in range(3000))),
            ("SET", b"key", b"\x00\xff" * 200, "PX", 86_400_000),
            ("SET", "text key", memoryview(b"value"), "NX", "PX", 1.5),
            ("CONFIG GET", "maxmemory"),
            (b"CLIENT PAUSE", 100),
        ],
    )
    def test_bytes_on_the_wire_are_redis_pys(self, args: tuple[object, ...]) -> None:
        """Every command packs to exactly the bytes redis-py's own packer produces,
        including the multi-word command names redis-py splits."""
        assert packed(HiredisConnection(), *args) == packed(Connection(), *args)

    def test_a_value_redis_py_refuses_is_still_refused(self) -> None:
        """A type neither packer takes raises redis-py's DataError, not a hiredis error."""
        with pytest.raises(DataError):
            HiredisConnection().pack_command("SET", b"k", {"not": "encodable"})


class TestClient:
    async def test_a_patched_client_talks_to_a_real_server(self, redis_server: RedisServer) -> None:
        """Connections of a patched client pack with hiredis, and Redis understands them."""
        client = Redis.from_url(redis_server.url)
        use_hiredis_packing(client)
        use_hiredis_packing(client)  # twice is harmless
        try:
            await client.set(b"k1", b"v1", px=60_000)
            await client.mset({b"k2": b"v2", b"k3": b"v3"})
            assert await client.mget([b"k1", b"k2", b"k3", b"nope"]) == [b"v1", b"v2", b"v3", None]
            connection = client.connection_pool.connection_class
            assert issubclass(connection, HiredisPacking)
            assert connection.__mro__.count(HiredisPacking) == 1
        finally:
            await client.aclose()

"""`signer serve` with Redis missing or coming and going: the log says so once per change,
/readyz and signer_cache_up tell the truth from the first request, and tokens are issued
throughout (signed locally while Redis is away)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import V2_APP, Deployment, write_config
from tests.service.test_process import Server, serve
from tests.support import RedisServer, free_port

pytestmark = pytest.mark.processes

UNREACHABLE = "cache unreachable: serving by signing locally until it returns"


def config_for(deployment: Deployment, url: str) -> Path:
    cache = {"url": url, "timeout": 0.05, "breaker_failures": 2, "breaker_reset": 0.3}
    return write_config(deployment.directory, cache=cache)


def events(server: Server) -> list[str]:
    """The ``event`` of every JSON log line so far."""
    lines = [line for line in server.log().splitlines() if line.startswith("{")]
    return [json.loads(line)["event"] for line in lines]


def cache_up(server: Server) -> bool:
    body = httpx.get(f"{server.url}/readyz").json()
    return bool(body["details"]["cache"]["up"])


def metric_up(server: Server) -> str:
    text = httpx.get(f"{server.url}/metrics").text
    return next(line for line in text.splitlines() if line.startswith("signer_cache_up "))


def token_status(server: Server, deployment: Deployment, userid: str) -> int:
    response = httpx.post(
        f"{server.url}/v1/usersig",
        json={"sdkappid": V2_APP, "userid": userid},
        headers=deployment.headers(),
    )
    return response.status_code


def wait_for(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never came true"
        time.sleep(0.1)


class TestStartingWithoutRedis:
    def test_unreachable_at_start_up_is_logged_reported_and_still_serves(
        self, tmp_path: Path, deployment: Deployment
    ) -> None:
        """Nothing listens at the cache URL: logged at start-up, down in /readyz and the
        metric before any token request, and tokens are still issued."""
        config = config_for(deployment, f"redis://127.0.0.1:{free_port()}/0")
        with serve(tmp_path, "--config", str(config)) as server:
            assert cache_up(server) is False
            assert metric_up(server) == "signer_cache_up 0.0"
            assert events(server).count(UNREACHABLE) == 1
            assert events(server).index(UNREACHABLE) < events(server).index("listening")
            assert [token_status(server, deployment, f"u{n}") for n in range(10)] == [200] * 10
            time.sleep(1.0)  # several background checks fail meanwhile: no new line
            assert events(server).count(UNREACHABLE) == 1
            assert cache_up(server) is False


class TestRedisComingAndGoing:
    def test_down_and_back_are_logged_once_each_and_followed_without_traffic(
        self, tmp_path: Path, deployment: Deployment, redis_server: RedisServer
    ) -> None:
        """Kill Redis, then start it again on its port: one log line each, and /readyz and
        signer_cache_up follow both changes with no token request to notice them."""
        config = config_for(deployment, redis_server.url)
        with serve(tmp_path, "--config", str(config)) as server:
            assert "cache reachable" in events(server)
            assert cache_up(server) and metric_up(server) == "signer_cache_up 1.0"

            redis_server.kill()
            wait_for(lambda: not cache_up(server))
            assert metric_up(server) == "signer_cache_up 0.0"
            assert [token_status(server, deployment, f"d{n}") for n in range(20)] == [200] * 20

            again = RedisServer(redis_server.directory, redis_server.port).start()
            try:
                wait_for(lambda: cache_up(server))
                assert metric_up(server) == "signer_cache_up 1.0"
                assert [token_status(server, deployment, f"b{n}") for n in range(20)] == [200] * 20
                time.sleep(1.0)
                seen = events(server)
                assert seen.count(UNREACHABLE) == 1
                assert seen.count("cache reachable again") == 1
                assert seen.index(UNREACHABLE) < seen.index("cache reachable again")
            finally:
                again.stop()

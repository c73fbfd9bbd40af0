"""Service fixtures: a configured signer (v1 + v2 apps, API keys) and a real HTTP client.

The application is the real one (real engine with a worker process, memory cache); only
the listening socket comes from aiohttp's test utilities.
"""

from __future__ import annotations

import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from signer.cache.factory import make_cache
from signer.config import build_runtime, load_settings
from signer.core import Curve, EcPrivateKey, HmacSecret, generate_private_key
from signer.service.app import create_app
from signer.service.state import ServiceState

V1_APP = 1400000001
V2_APP = 1400000002
OTHER_APP = 1400000003
API_KEY = "test-api-key-0123456789abcdef"
LIMITED_KEY = "limited-api-key-fedcba9876543210"
SECRET = "v2-secret-for-tests-5bd2850fff3ecb11"


@dataclass
class Deployment:
    """A config directory on disk and the keys in it."""

    directory: Path
    config: Path
    v1_key: EcPrivateKey
    old_v1_key: EcPrivateKey
    secret: HmacSecret

    def headers(self, key: str = API_KEY) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


async def expect_error(response: object, status: int, code: str) -> dict[str, object]:
    """Assert ``response`` is the JSON error ``code`` with ``status`` (no traceback in it)
    and return its ``error`` object."""
    assert response.status == status, await response.text()  # type: ignore[attr-defined]
    body = await response.json()  # type: ignore[attr-defined]
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert "Traceback" not in str(body)
    return dict(body["error"])


def write_config(directory: Path, extra: str = "", v1_version: str = "2") -> Path:
    config = directory / "signer.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [server]
            max_body_bytes = 65536

            [engine]
            workers = 1

            [rate_limit]
            rate = 1000
            burst = 1000

            [[apps]]
            sdkappid = {V1_APP}
            algorithm = "v1"
            private_key_file = "keys/app1/private_key"
            version = "{v1_version}"
            default_expire = 86400

            [[apps.previous_keys]]
            version = "1"
            public_key_file = "keys/app1/old_public_key"

            [[apps]]
            sdkappid = {V2_APP}
            algorithm = "v2"
            secret_file = "keys/app2/secret"

            [[apps]]
            sdkappid = {OTHER_APP}
            algorithm = "v2"
            secret = "another-secret"

            [[callers]]
            name = "app-servers"
            api_key_file = "keys/callers/app-servers"
            sdkappids = [{V1_APP}, {V2_APP}, {OTHER_APP}]

            [[callers]]
            name = "limited"
            api_key_file = "keys/callers/limited"
            sdkappids = [{V2_APP}]
            """
        )
        + extra
    )
    return config


def make_deployment(directory: Path) -> Deployment:
    """Fresh keys, API keys and a config file in ``directory``."""
    keys = directory / "keys"
    for sub in ("app1", "app2", "callers"):
        (keys / sub).mkdir(parents=True)
    v1, old = generate_private_key(Curve.P256), generate_private_key(Curve.P256)
    (keys / "app1" / "private_key").write_bytes(v1.to_pem())
    (keys / "app1" / "old_public_key").write_bytes(old.public_key().to_pem())
    (keys / "app2" / "secret").write_text(SECRET + "\n")
    (keys / "callers" / "app-servers").write_text(API_KEY + "\n")
    (keys / "callers" / "limited").write_text(LIMITED_KEY)
    config = write_config(directory)
    return Deployment(directory, config, v1, old, HmacSecret.from_text(SECRET))


@pytest.fixture
def deployment(tmp_path: Path) -> Deployment:
    return make_deployment(tmp_path)


ClientFactory = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def make_client(
    aiohttp_client: Callable[..., Awaitable[TestClient]], deployment: Deployment
) -> ClientFactory:
    """Build a test client for the deployment, optionally with a different config file."""

    async def make(config: Path | None = None) -> TestClient:
        runtime = build_runtime(load_settings(config or deployment.config))
        state = ServiceState.create(runtime, make_cache(runtime.settings.cache))
        return await aiohttp_client(create_app(state))

    return make


@pytest.fixture
async def client(make_client: ClientFactory) -> TestClient:
    return await make_client()

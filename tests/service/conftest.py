"""Service fixtures: a configured signer (v1 + v2 apps, API keys) and a real HTTP client.

The application is the real one (real engine with a worker process, memory cache); only
the listening socket comes from aiohttp's test utilities.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
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


TomlTable = Mapping[str, object]


def toml_value(value: object) -> str:
    """``value`` as a TOML value: the few types a signer config holds."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # JSON escapes are TOML's
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(f"no TOML rendering for {type(value).__name__}")


def toml_table(name: str, values: TomlTable, *, array: bool = False) -> str:
    """``[name]`` (``[[name]]`` if ``array``) with its keys, in order; a list of tables
    under a key follows as ``[[name.key]]``, each after a blank line."""
    lines = [f"[[{name}]]" if array else f"[{name}]"]
    nested: list[tuple[str, list[TomlTable]]] = []
    for key, value in values.items():
        if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            nested.append((key, value))
        else:
            lines.append(f"{key} = {toml_value(value)}")
    text = "\n".join(lines) + "\n"
    for key, tables in nested:
        for table in tables:
            text += "\n" + toml_table(f"{name}.{key}", table, array=True)
    return text


def write_config(
    directory: Path,
    extra: str = "",
    v1_version: str = "2",
    *,
    name: str = "signer.toml",
    server: TomlTable | None = None,
    engine: TomlTable | None = None,
    rate_limit: TomlTable | None = None,
    cache: TomlTable | None = None,
    apps: Mapping[int, TomlTable] | None = None,
    extra_apps: Sequence[TomlTable] = (),
    extra_callers: Sequence[TomlTable] = (),
) -> Path:
    """Write the deployment's config as ``directory / name`` and return its path.

    The deployment's settings (a v1 app with a previous key, two v2 apps, two callers)
    with each table given merged over them key by key, as in
    ``write_config(d, server={"body_timeout": 0.3}, rate_limit={"rate": 1, "burst": 3})``:
    ``cache`` writes a ``[cache]`` table (none by default), ``apps`` maps an sdkappid to
    settings of that app (``{V2_APP: {"max_expire": 7200}}``), ``extra_apps`` and
    ``extra_callers`` are added after the deployment's, ``v1_version`` is the v1 app's key
    version and ``extra`` raw TOML appended to the file."""
    app_settings = dict(apps or {})
    app_list: list[TomlTable] = [
        {
            "sdkappid": V1_APP,
            "algorithm": "v1",
            "private_key_file": "keys/app1/private_key",
            "version": v1_version,
            "default_expire": 86400,
            **app_settings.pop(V1_APP, {}),
            "previous_keys": [{"version": "1", "public_key_file": "keys/app1/old_public_key"}],
        },
        {
            "sdkappid": V2_APP,
            "algorithm": "v2",
            "secret_file": "keys/app2/secret",
            **app_settings.pop(V2_APP, {}),
        },
        {
            "sdkappid": OTHER_APP,
            "algorithm": "v2",
            "secret": "another-secret",
            **app_settings.pop(OTHER_APP, {}),
        },
        *extra_apps,
    ]
    assert not app_settings, f"no such app in the deployment: {sorted(app_settings)}"
    callers: list[TomlTable] = [
        {
            "name": "app-servers",
            "api_key_file": "keys/callers/app-servers",
            "sdkappids": [V1_APP, V2_APP, OTHER_APP],
        },
        {"name": "limited", "api_key_file": "keys/callers/limited", "sdkappids": [V2_APP]},
        *extra_callers,
    ]
    tables = [
        # One HTTP process unless a test asks for more ("auto" would run one per core
        # whenever a test adds a [cache] url).
        toml_table("server", {"max_body_bytes": 65536, "processes": 1, **(server or {})}),
        toml_table("engine", {"workers": 1, **(engine or {})}),
        toml_table("rate_limit", {"rate": 1000, "burst": 1000, **(rate_limit or {})}),
        *(toml_table("apps", app, array=True) for app in app_list),
        *(toml_table("callers", caller, array=True) for caller in callers),
        *([toml_table("cache", cache)] if cache is not None else []),
    ]
    config = directory / name
    config.write_text("\n" + "\n".join(tables) + extra)
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

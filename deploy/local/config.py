"""The signer config of a local deployment (``deploy/local``, ``loadtest --local``): a v1
and a v2 app, one caller's API key, rate limits off, a shared cache."""

from __future__ import annotations

V1_APP, V2_APP = 1400000001, 1400000002

CONFIG = """\
[server]
host = "127.0.0.1"
port = {port}
processes = {processes}
log_format = "json"
shutdown_timeout = {shutdown_timeout}

[engine]
workers = {workers}

[[apps]]
sdkappid = {v1}
algorithm = "v1"
private_key_file = "{v1_key}"
version = "{v1_version}"
{previous}
[[apps]]
sdkappid = {v2}
algorithm = "v2"
secret_file = "keys/v2/secret"

[[callers]]
name = "{caller}"
api_key_file = "keys/caller"
sdkappids = [{v1}, {v2}]

[rate_limit]
enabled = false

[cache]
url = "{cache_url}"
timeout = {cache_timeout}
"""

PREVIOUS_KEY = """\
[[apps.previous_keys]]
version = "{version}"
public_key_file = "{public_key}"
"""


def signer_config(
    cache_url: str,
    *,
    port: int = 8080,
    processes: int = 1,
    workers: int = 1,
    caller: str = "deploy-local",
    v1: int = V1_APP,
    v2: int = V2_APP,
    v1_key: str = "keys/v1/private_key",
    v1_version: str = "1",
    previous: list[tuple[str, str]] | None = None,
    shutdown_timeout: float = 15.0,
    cache_timeout: float = 0.05,
) -> str:
    """The TOML text. Key paths are relative to the config file (``make_keys``' layout);
    ``previous`` lists (version, public key file) of v1 keys still verified."""
    return CONFIG.format(
        port=port,
        processes=processes,
        workers=workers,
        caller=caller,
        v1=v1,
        v2=v2,
        v1_key=v1_key,
        v1_version=v1_version,
        previous="".join(
            PREVIOUS_KEY.format(version=version, public_key=public)
            for version, public in previous or []
        ),
        shutdown_timeout=shutdown_timeout,
        cache_url=cache_url,
        cache_timeout=cache_timeout,
    )

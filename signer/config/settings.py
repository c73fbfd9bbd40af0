"""The typed settings of ``signer serve``: one object, from a TOML file and ``SIGNER_*``.

Priority: environment (``SIGNER_SERVER__PORT=9000``, nested with ``__``) over the TOML file
over defaults. Paths in the file are relative to the file. Validation here is about
shapes and ranges; loading the keys themselves happens in :mod:`signer.config.runtime`, so
every problem is still reported at start-up, naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from signer.core import DEFAULT_EXPIRE, UINT32_MAX

Port = Annotated[int, Field(ge=0, le=65535)]
SdkAppId = Annotated[int, Field(ge=1, le=UINT32_MAX)]
Seconds = Annotated[int, Field(ge=1, le=UINT32_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: Port = 8080
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 << 20)] = 1 << 20
    shutdown_timeout: Annotated[float, Field(gt=0, le=600)] = 15.0
    body_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Seconds a client may take to send a request body (a trickled body holds memory)."""
    header_timeout: Annotated[float, Field(gt=0, le=600)] = 10.0
    """Seconds a client may take to send a request's line and headers, from its first byte
    (or from connecting): else 408 and the connection is closed (slowloris)."""
    keepalive_timeout: Annotated[float, Field(ge=0, le=3600)] = 75.0
    """Seconds an idle kept-alive connection stays open (0: close after each response)."""
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = 10_000
    """Open connections per HTTP process; beyond it a connection gets 503 and is closed."""
    backlog: Annotated[int, Field(ge=1, le=65535)] = 1024
    """Length of the kernel's queue of connections not yet accepted (capped by the
    kernel's net.core.somaxconn)."""
    processes: Annotated[int, Field(ge=1, le=64)] = 1
    """HTTP processes sharing the port (SO_REUSEPORT), each with its own event loop and
    signing workers: one event loop is the limit of a single process."""
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_batch_userids: Annotated[int, Field(ge=1, le=100_000)] = 10_000


class KeySettings(_Strict):
    """One key of an app. v1 apps give a private key (or, for an old version kept only to
    verify, a public key); v2 apps give the secret, from a file or inline (env)."""

    version: str = "1"
    private_key_file: Path | None = None
    public_key_file: Path | None = None
    secret_file: Path | None = None
    secret: str | None = Field(default=None, repr=False)


class AppSettings(KeySettings):
    sdkappid: SdkAppId
    algorithm: Literal["v1", "v2"]
    name: str = ""
    previous_keys: list[KeySettings] = []
    default_expire: Seconds = DEFAULT_EXPIRE
    min_expire: Seconds = 60
    max_expire: Seconds = 10 * 365 * 86400
    max_userid_bytes: Annotated[int, Field(ge=1, le=1024)] = 32

    @model_validator(mode="after")
    def _check_lifetimes(self) -> Self:
        if not self.min_expire <= self.default_expire <= self.max_expire:
            raise ValueError("need min_expire <= default_expire <= max_expire")
        return self


class CallerSettings(_Strict):
    name: Annotated[str, Field(min_length=1)]
    api_key_file: Path | None = None
    api_key: str | None = Field(default=None, repr=False)
    sdkappids: list[SdkAppId] | Literal["*"] = "*"


class AuthSettings(_Strict):
    disabled: bool = False


class RateLimitSettings(_Strict):
    """Per-caller token bucket: ``rate`` requests a second, bursts up to ``burst``."""

    enabled: bool = True
    rate: Annotated[float, Field(gt=0)] = 2000.0
    burst: Annotated[float, Field(ge=1)] = 4000.0


class EngineConfig(_Strict):
    workers: Annotated[int, Field(ge=1, le=256)] | None = None
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = 64
    max_delay_ms: Annotated[float, Field(gt=0, le=1000)] = 2.0
    max_queued: Annotated[int, Field(ge=1)] = 50_000
    # 0: the service sends v2 (HMAC) tokens to the workers too. On its own an HMAC token
    # costs the loop ~12 µs, but inside a busy HTTP loop signing inline cost it 30-40 µs
    # more a request than the round trip did: 18% fewer req/s (docs/PERFORMANCE.md).
    inline_v2_max: Annotated[int, Field(ge=0)] = 0


class CacheSettings(_Strict):
    """``url`` empty means the in-process memory cache; ``redis://[user:pass@]host:port/db``
    or ``rediss://`` (TLS) a shared Redis. ``min_remaining`` is the least life a served
    token may have left; a cached token with less is never served. Every Redis call gives
    up after ``timeout_ms``; ``breaker_failures`` failures in a row stop calls for
    ``breaker_reset_s`` seconds (requests are then signed locally). A token with less than
    ``refresh_ahead`` seconds left is served and re-signed in the background; a miss takes a
    ``lease_ms`` lease so one instance signs while others wait up to ``lease_wait_ms``."""

    url: str = Field(default="", repr=False)
    max_entries: Annotated[int, Field(ge=0)] = 100_000
    min_remaining: Seconds = 3600
    timeout_ms: Annotated[float, Field(gt=0, le=5000)] = 50.0
    breaker_failures: Annotated[int, Field(ge=1)] = 3
    breaker_reset_s: Annotated[float, Field(gt=0)] = 2.0
    key_prefix: str = "signer:"
    refresh_ahead: Seconds = 7200
    refresh_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    lease_ms: Annotated[int, Field(ge=10, le=60_000)] = 2000
    lease_wait_ms: Annotated[int, Field(ge=0, le=60_000)] = 500
    l1_entries: Annotated[int, Field(ge=0)] = 10_000
    l1_ttl_s: Annotated[int, Field(ge=1, le=3600)] = 5

    @model_validator(mode="after")
    def _refresh_before_floor(self) -> Self:
        if self.refresh_ahead <= self.min_remaining:
            raise ValueError("refresh_ahead must be larger than min_remaining")
        return self

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = url.partition("://")[0] if url else ""
        known = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
        if url and scheme not in (*known, "redis+sentinel", "rediss+sentinel"):
            raise ValueError(
                f"unsupported cache url scheme {scheme!r}: use redis://, rediss://, unix://, "
                "redis+cluster://host:port[,host:port...] or "
                "redis+sentinel://host:port[,host:port...]/<service>"
            )
        return url


class Settings(BaseSettings):
    """Everything ``signer serve`` reads at start-up (and again on SIGHUP)."""

    model_config = SettingsConfigDict(
        env_prefix="SIGNER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    server: ServerSettings = ServerSettings()
    apps: list[AppSettings] = []
    callers: list[CallerSettings] = []
    auth: AuthSettings = AuthSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    engine: EngineConfig = EngineConfig()
    cache: CacheSettings = CacheSettings()
    dev_mode: bool = False
    config_dir: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; the environment must win over it.
        return env_settings, init_settings

    @model_validator(mode="after")
    def _check_apps(self) -> Self:
        seen: set[int] = set()
        for app in self.apps:
            if app.sdkappid in seen:
                raise ValueError(f"sdkappid {app.sdkappid} is configured twice")
            seen.add(app.sdkappid)
        if self.engine.max_queued < self.server.max_batch_userids:
            raise ValueError(
                "engine.max_queued must be at least server.max_batch_userids, or a full "
                "batch could never be accepted"
            )
        names = [caller.name for caller in self.callers]
        if len(names) != len(set(names)):
            raise ValueError("caller names must be unique")
        return self

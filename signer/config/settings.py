"""The typed settings of ``signer serve``: one object, from a TOML file and ``SIGNER_*``.

Priority: environment (``SIGNER_SERVER__PORT=9000``, nested with ``__``) over the TOML file
over defaults. Paths in the file are relative to the file. Validation here is about
shapes and ranges; loading the keys themselves happens in :mod:`signer.config.runtime`, so
every problem is still reported at start-up, naming the field.

Every duration is a number of seconds, named without a unit (``timeout = 0.05``), as
``expire`` is in Tencent's API. The names of an earlier release that carried a unit
(``timeout_ms``, ``breaker_reset_s``, ...) are still read, converted, and named in a
warning at start-up (:meth:`Settings.deprecated_names`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from signer.config.redis_urls import parse_cluster_url
from signer.core import DEFAULT_EXPIRE, UINT32_MAX
from signer.engine import EngineSettings
from signer.engine.cpus import usable_cpus

Port = Annotated[int, Field(ge=0, le=65535)]
SdkAppId = Annotated[int, Field(ge=1, le=UINT32_MAX)]
Seconds = Annotated[int, Field(ge=1, le=UINT32_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Renaming(_Strict):
    """A section that still reads the duration names of an earlier release: ``RENAMED``
    maps each old name to its new one and the factor from its unit to seconds."""

    RENAMED: ClassVar[dict[str, tuple[str, float]]] = {}
    _renamed: tuple[str, ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _read_old_names(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        renamed = []
        if isinstance(data, dict) and cls.RENAMED.keys() & data.keys():
            data = dict(data)
            for old, (new, factor) in cls.RENAMED.items():
                if old not in data:
                    continue
                if new in data:
                    raise ValueError(f"give {new} (seconds) or the deprecated {old}, not both")
                value = data.pop(old)
                if isinstance(value, str):  # from the environment
                    value = float(value) if "." in value else int(value)
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError(f"{old} must be a number")
                data[new] = value * factor if factor != 1 else value
                renamed.append(f"{old} -> {new} (seconds)")
        section = handler(data)
        section._renamed = tuple(renamed)
        return section


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
    processes: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    """HTTP processes sharing the port (SO_REUSEPORT), each with its own event loop and
    signing workers: one event loop is the limit of a single process. ``"auto"``: see
    :attr:`Settings.processes`."""
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
    keep_warm_days: Annotated[int, Field(ge=0, le=365)] = 0
    """Keep the cached tokens of users who asked within this many days re-signed before
    they fall under ``[cache] min_remaining`` (0: off). Needs a ``[cache] url``."""

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


_ENGINE = EngineSettings(workers=1)  # the engine's defaults are the file's: one source


class EngineConfig(_Renaming):
    """``[engine]``, the signing pool: :class:`~signer.engine.EngineSettings` is what each
    field means and its default; :func:`engine_settings` the one translation. ``workers``
    left out is the cores, shared among ``[server] processes``."""

    RENAMED: ClassVar[dict[str, tuple[str, float]]] = {"max_delay_ms": ("max_delay", 0.001)}

    workers: Annotated[int, Field(ge=1, le=256)] | None = None
    max_batch: Annotated[int, Field(ge=1, le=10_000)] = _ENGINE.max_batch
    max_delay: Annotated[float, Field(gt=0, le=1)] = _ENGINE.max_delay
    max_queued: Annotated[int, Field(ge=1)] = _ENGINE.max_queued
    inline_v2_max: Annotated[int, Field(ge=0)] = _ENGINE.inline_v2_max
    background_batch: Annotated[int, Field(ge=1, le=10_000)] = _ENGINE.background_batch


class CacheSettings(_Renaming):
    """``url`` empty means the in-process memory cache; ``redis://[user:pass@]host:port/db``
    or ``rediss://`` (TLS) a shared Redis. ``min_remaining`` is the least life a served
    token may have left; a cached token with less is never served. Every Redis call gives
    up after ``timeout`` seconds; ``breaker_failures`` failures in a row stop calls for
    ``breaker_reset`` seconds (requests are then signed locally). A token with less than
    ``refresh_ahead`` seconds left is served and re-signed in the background; a miss takes a
    ``lease`` so one instance signs while others wait up to ``lease_wait`` seconds for its
    token (by default as long as the lease itself: under a storm a holder's mint queues,
    and a waiter that signs too only queues behind it); a lease let go without a token, or
    run out, passes to one waiter. L1 entries (in front of Redis) live at most ``l1_ttl``
    seconds."""

    RENAMED: ClassVar[dict[str, tuple[str, float]]] = {
        "timeout_ms": ("timeout", 0.001),
        "breaker_reset_s": ("breaker_reset", 1),
        "lease_ms": ("lease", 0.001),
        "lease_wait_ms": ("lease_wait", 0.001),
        "l1_ttl_s": ("l1_ttl", 1),
    }

    url: str = Field(default="", repr=False)
    max_entries: Annotated[int, Field(ge=0)] = 100_000
    min_remaining: Seconds = 3600
    timeout: Annotated[float, Field(gt=0, le=5)] = 0.05
    breaker_failures: Annotated[int, Field(ge=1)] = 3
    breaker_reset: Annotated[float, Field(gt=0)] = 2.0
    key_prefix: str = "signer:"
    refresh_ahead: Seconds = 7200
    refresh_jitter: Annotated[float, Field(ge=0, lt=1)] = 0.2
    lease: Annotated[float, Field(ge=0.01, le=60)] = 2.0
    lease_wait: Annotated[float, Field(ge=0, le=60)] = 2.0
    l1_entries: Annotated[int, Field(ge=0)] = 0
    l1_ttl: Annotated[int, Field(ge=1, le=3600)] = 5

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
        if scheme in ("redis+cluster", "rediss+cluster"):
            # Checked here, not first in each HTTP process as its cache is built (a
            # traceback, then "HTTP processes keep dying").
            try:
                parse_cluster_url(url)
            except ValueError as exc:
                raise ValueError(f"bad cluster url: {exc}") from None
        return url


class KeepWarmSettings(_Strict):
    """``[keep_warm]``: how the background re-signing of apps with ``keep_warm_days`` runs.

    ``rate`` caps re-signs per second in each HTTP process (its own budget, apart from the
    callers' rate limits); ``spread`` is the share of a token's usable life (``expire`` -
    ``min_remaining``) before its end over which its re-sign is scheduled, at a random
    point, so a morning's logins are re-signed over hours, not at once; ``claim`` is how
    long (seconds) an instance holds the due keys it claimed before another may take them
    (a crashed instance's claims come back after it); ``interval`` is the seconds between
    two looks at the due keys (jittered)."""

    rate: Annotated[float, Field(gt=0, le=100_000)] = 100.0
    spread: Annotated[float, Field(gt=0, le=0.9)] = 0.25
    claim: Annotated[float, Field(ge=1, le=3600)] = 60.0
    interval: Annotated[float, Field(ge=0.05, le=600)] = 1.0


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
    keep_warm: KeepWarmSettings = KeepWarmSettings()
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

    @property
    def processes(self) -> int:
        """How many HTTP processes to run: ``[server] processes``, or for ``"auto"`` one
        per core when a shared cache (``[cache] url``) is configured, else one (a memory
        cache per process could not honour a DELETE made on another, so several would
        cache nothing)."""
        chosen = self.server.processes
        if chosen != "auto":
            return chosen
        return min(64, usable_cpus()) if self.cache.url else 1

    def processes_chosen(self) -> str:
        """Why :attr:`processes` is what it is, for the start-up log."""
        if self.server.processes != "auto":
            return "configured ([server] processes)"
        if self.cache.url:
            return f"auto: one per usable CPU ({usable_cpus()}), with a shared cache"
        return "auto: one, since no [cache] url is configured"

    def deprecated_names(self) -> list[str]:
        """The settings given under a name of an earlier release (still read, converted),
        for the start-up warning."""
        return [
            f"{name}.{change}"
            for name, section in (("engine", self.engine), ("cache", self.cache))
            for change in section._renamed
        ]

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
        self._check_keep_warm()
        return self

    def _check_keep_warm(self) -> None:
        """Keep-warm's state is shared by every instance in Redis, and a re-signed token
        must be worth serving: refuse what could never work, naming the app."""
        for index, app in enumerate(self.apps):
            if not app.keep_warm_days:
                continue
            field = f"apps[{index}].keep_warm_days"
            if not self.cache.url:
                raise ValueError(
                    f"{field}: keep-warm needs a shared cache ([cache] url); the "
                    "in-memory cache is one process's and would vanish with it"
                )
            if app.default_expire <= self.cache.refresh_ahead:
                raise ValueError(
                    f"{field}: default_expire ({app.default_expire} s) must be longer than "
                    f"[cache] refresh_ahead ({self.cache.refresh_ahead} s), or every token "
                    "is due for a re-sign as soon as it is signed"
                )


def engine_settings(settings: Settings) -> EngineSettings:
    """What the engine of one HTTP process runs with: ``[engine]``, and its share of the
    cores when ``workers`` is left out."""
    config = settings.engine
    workers = config.workers or EngineSettings().workers
    if not config.workers and settings.processes > 1:
        # Several HTTP processes share the cores: each gets its part of them, but at least
        # two, because the kernel may hand one process most of a few busy connections.
        workers = max(2, workers // settings.processes)
    return EngineSettings(
        workers=workers,
        max_batch=config.max_batch,
        max_delay=config.max_delay,
        max_queued=config.max_queued,
        inline_v2_max=config.inline_v2_max,
        background_batch=config.background_batch,
    )

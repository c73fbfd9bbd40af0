"""From settings to what the service runs with: loaded keys, the engine's key set, callers.

Everything that can be wrong with the files a config points at (missing, unreadable, the
wrong kind of key for the algorithm, an unsupported curve) is found here, at start-up or at
a SIGHUP reload, and reported as ``field: problem`` lines through :class:`ConfigError`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

from signer.config.loader import ConfigError
from signer.config.settings import AppSettings, KeySettings, Settings
from signer.core import (
    EcPrivateKey,
    EcPublicKey,
    HmacSecret,
    KeyLoadError,
    load_private_key,
    load_public_key,
)
from signer.engine import AppKey, KeySet

VerifyKey = EcPublicKey | HmacSecret
MAX_KEY_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class AppRuntime:
    """One app, keys loaded: the newest key signs, every listed key verifies."""

    settings: AppSettings
    signing: AppKey
    verify_keys: dict[str, VerifyKey]

    @property
    def sdkappid(self) -> int:
        return self.settings.sdkappid

    @property
    def key_version(self) -> str:
        return self.signing.key_version

    @functools.cached_property
    def cache_version(self) -> str:
        """The key version plus a fingerprint of the key itself, for cache keys: replacing
        a key file without bumping ``version`` must still retire every cached token."""
        digest = hashlib.sha256(b"signer-cache-key\0" + self.signing.material).hexdigest()
        return f"{self.signing.key_version}~{digest[:8]}"


@dataclass(frozen=True)
class Caller:
    """An API key holder. Only the SHA-256 of the key is kept in memory."""

    name: str
    key_digest: bytes
    sdkappids: frozenset[int] | None  # None: every app

    def may_use(self, sdkappid: int) -> bool:
        return self.sdkappids is None or sdkappid in self.sdkappids


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    apps: dict[int, AppRuntime]
    callers: tuple[Caller, ...]
    keyset: KeySet

    def authenticate(self, api_key: str) -> Caller | None:
        """The caller holding ``api_key``; every caller is compared, in constant time."""
        digest = hashlib.sha256(api_key.encode("utf-8", "surrogateescape")).digest()
        found = None
        for caller in self.callers:
            if hmac.compare_digest(digest, caller.key_digest):
                found = caller
        return found


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, field: str, message: str) -> None:
        self.lines.append(f"{field}: {message}")


def _read(path: Path, base: Path | None, field: str, problems: _Problems) -> bytes | None:
    full = path if path.is_absolute() or base is None else base / path
    try:
        with full.open("rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        problems.add(field, f"cannot read {full}: {exc.strerror}")
        return None
    if len(data) > MAX_KEY_FILE_BYTES:
        problems.add(field, f"{full} is larger than {MAX_KEY_FILE_BYTES} bytes")
        return None
    return data


def _secret(data: bytes, field: str, problems: _Problems) -> HmacSecret | None:
    """A v2 secret, refusing what is plainly a PEM key (a v1 key named by mistake)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        problems.add(
            field,
            "this is a PEM key, not a v2 secret (a v1 app takes private_key_file; "
            "a v2 secret is the app's key text from the console)",
        )
        return None
    return HmacSecret.from_text(data)


def _load_key(
    app: AppSettings,
    key: KeySettings,
    field: str,
    base: Path | None,
    problems: _Problems,
    verify_only: bool = False,
) -> EcPrivateKey | EcPublicKey | HmacSecret | None:
    """Load one key; ``verify_only`` (previous versions) also accepts a v1 public key.
    A problem with a file's contents names that file's field (``apps[0].secret_file``)."""
    where = field
    try:
        if app.algorithm == "v1":
            if key.secret_file or key.secret:
                problems.add(field, "a v1 (ECDSA) app takes private_key_file, not a secret")
                return None
            if key.private_key_file:
                where = f"{field}.private_key_file"
                data = _read(key.private_key_file, base, where, problems)
                return None if data is None else load_private_key(data)
            if key.public_key_file and verify_only:
                where = f"{field}.public_key_file"
                data = _read(key.public_key_file, base, where, problems)
                return None if data is None else load_public_key(data)
            problems.add(field, "a v1 app needs private_key_file")
            return None
        if key.private_key_file or key.public_key_file:
            problems.add(field, "a v2 (HMAC) app takes secret_file or secret, not an EC key")
            return None
        if key.secret_file:
            where = f"{field}.secret_file"
            data = _read(key.secret_file, base, where, problems)
            return None if data is None else _secret(data, where, problems)
        if key.secret:
            where = f"{field}.secret"
            return _secret(key.secret.encode("utf-8"), where, problems)
        problems.add(field, "a v2 app needs secret_file or secret")
    except KeyLoadError as exc:
        problems.add(where, exc.message)
    return None


def _build_app(
    index: int, app: AppSettings, base: Path | None, problems: _Problems
) -> AppRuntime | None:
    field = f"apps[{index}]"
    current = _load_key(app, app, field, base, problems)
    verify_keys: dict[str, VerifyKey] = {}
    signing = None
    if isinstance(current, EcPrivateKey):
        signing = AppKey.from_private_key(app.sdkappid, current, app.version, app.max_userid_bytes)
        verify_keys[app.version] = current.public_key()
    elif isinstance(current, HmacSecret):
        signing = AppKey.from_secret(app.sdkappid, current, app.version, app.max_userid_bytes)
        verify_keys[app.version] = current
    for number, old in enumerate(app.previous_keys):
        old_field = f"{field}.previous_keys[{number}]"
        if old.version in verify_keys:
            problems.add(old_field, f"key version {old.version!r} appears twice")
            continue
        loaded = _load_key(app, old, old_field, base, problems, verify_only=True)
        if loaded is not None:
            verify_keys[old.version] = (
                loaded.public_key() if isinstance(loaded, EcPrivateKey) else loaded
            )
    if signing is None:
        return None
    return AppRuntime(app, signing, verify_keys)


def _build_callers(settings: Settings, problems: _Problems) -> tuple[Caller, ...]:
    callers = []
    digests: set[bytes] = set()
    for index, caller in enumerate(settings.callers):
        field = f"callers[{index}]"
        key = caller.api_key
        if caller.api_key_file is not None:
            data = _read(
                caller.api_key_file, settings.config_dir, f"{field}.api_key_file", problems
            )
            key = None if data is None else data.decode("utf-8", "replace").strip()
        if not key:
            if caller.api_key_file is None:
                problems.add(field, "needs api_key_file (or api_key)")
            elif key == "":
                problems.add(f"{field}.api_key_file", "the API key file is empty")
            continue
        digest = hashlib.sha256(key.encode()).digest()
        if digest in digests:
            problems.add(field, "this API key is already used by another caller")
        digests.add(digest)
        allowed = None if caller.sdkappids == "*" else frozenset(caller.sdkappids)
        for appid in sorted(allowed or ()):
            if appid not in {app.sdkappid for app in settings.apps}:
                problems.add(f"{field}.sdkappids", f"sdkappid {appid} is not a configured app")
        callers.append(Caller(caller.name, digest, allowed))
    if not settings.callers and not settings.auth.disabled:
        problems.add(
            "callers", "no API keys configured: add [[callers]] or set [auth] disabled = true"
        )
    return tuple(callers)


def build_runtime(settings: Settings) -> Runtime:
    """Load every key and caller the settings name. Raises ConfigError listing problems."""
    problems = _Problems()
    if not settings.apps:
        problems.add("apps", "no apps configured: add at least one [[apps]]")
    apps = {}
    for index, app in enumerate(settings.apps):
        built = _build_app(index, app, settings.config_dir, problems)
        if built is not None:
            apps[app.sdkappid] = built
    callers = _build_callers(settings, problems)
    if problems.lines:
        raise ConfigError(problems.lines)
    keyset = KeySet.of(app.signing for app in apps.values())
    return Runtime(settings, apps, callers, keyset)

"""Reading settings: a TOML file plus the environment, or dev mode when there is neither.

Every failure becomes a :class:`ConfigError` whose lines each name a field and a problem,
so ``signer serve`` can stop with a message a person can act on.
"""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from signer.config.settings import AppSettings, AuthSettings, ServerSettings, Settings
from signer.core import Curve, generate_private_key

DEV_V1_APP = 1400000001
DEV_V2_APP = 1400000002


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` are "field: what is wrong" lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _field(location: tuple[int | str, ...]) -> str:
    """Pydantic's location as the config spells it: ``apps[0].private_key_file``."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text or "(config)"


def _from_validation(exc: ValidationError) -> ConfigError:
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{_field(tuple(error['loc']))}: {message}")
    return ConfigError(problems)


def load_settings(path: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings from ``path`` (TOML) and the environment; dev mode when there are no apps
    and no file. ``overrides`` (e.g. ``--host``/``--port``) win over everything."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError([f"config file {path}: {exc.strerror}"]) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"config file {path}: not valid TOML ({exc})"]) from None
        except RecursionError:
            raise ConfigError([f"config file {path}: nested too deeply"]) from None
        data["config_dir"] = path.resolve().parent
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise _from_validation(exc) from None
    except RecursionError:
        raise ConfigError(["(config): nested too deeply"]) from None
    if path is None and not settings.apps:
        settings = _dev_mode(settings)
    if overrides:
        server = settings.server.model_copy(update=overrides)
        settings = settings.model_copy(update={"server": server})
    return settings


def cli_command() -> str:
    """How to run the ``signer`` command line from a shell here, as a hint can print it:
    ``signer`` when that is on PATH and is this installation, else the absolute path of the
    script next to this interpreter (``.../.venv/bin/signer`` after ``scripts/serve``), else
    ``<this python> -m signer``."""
    script = Path(sys.executable).parent / "signer"
    found = shutil.which("signer")
    if found is not None and script.exists() and Path(found).resolve() == script.resolve():
        return "signer"
    if script.is_file() and os.access(script, os.X_OK):
        return str(script)
    return f"{sys.executable} -m signer"


def _remove_on_exit(directory: Path) -> None:
    """Delete ``directory`` when this process exits normally (which SIGTERM and Ctrl-C are
    for ``signer serve``: its handlers return from the server), never in a forked child."""
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:
            shutil.rmtree(directory, ignore_errors=True)

    atexit.register(remove)


def _dev_mode(settings: Settings) -> Settings:
    """Fresh keys in a temp directory, a v1 and a v2 app, no auth: for trying signer out.
    The directory (private keys included) is removed when the process exits."""
    directory = Path(tempfile.mkdtemp(prefix="signer-dev-"))
    _remove_on_exit(directory)
    key = generate_private_key(Curve.P256)
    (directory / "private_key").write_bytes(key.to_pem())
    (directory / "private_key").chmod(0o600)
    (directory / "public_key").write_bytes(key.public_key().to_pem())
    (directory / "secret").write_text(secrets.token_hex(32) + "\n")
    (directory / "secret").chmod(0o600)
    apps = [
        AppSettings(
            sdkappid=DEV_V1_APP,
            algorithm="v1",
            name="dev-v1",
            private_key_file=directory / "private_key",
        ),
        AppSettings(
            sdkappid=DEV_V2_APP, algorithm="v2", name="dev-v2", secret_file=directory / "secret"
        ),
    ]
    server: ServerSettings = settings.server.model_copy(update={"log_format": "console"})
    return settings.model_copy(
        update={
            "apps": apps,
            "auth": AuthSettings(disabled=True),
            "dev_mode": True,
            "config_dir": directory,
            "server": server,
        }
    )

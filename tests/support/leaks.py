"""The search, after the whole suite, of every log it produced for the secrets and tokens
it used: private keys, HMAC secrets and API keys never appear in a log, nor do issued tokens.

Why at the end of the session rather than in a test: the logs are those of every other
test (the service's log events in this process, what each test wrote to stderr, and the
log files of the redis-server, ``signer serve``, nginx and loadtest processes under the
session's temp dir), so only the end sees them all. ``tests/conftest.py`` wires it in;
a leak fails the run with the file and line it was found in.

Secrets are read from what the tests wrote to disk (every PEM private key, every file a
TOML config names in a ``*_file`` setting, the inline ``secret`` and ``api_key`` values)
plus the suite's constant HMAC secret. A token is whatever decodes as a UserSig, so every
token issued is covered without a list of them. Standard output is not a log (``signer
token`` prints tokens there by design) and is not searched.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from signer.core.envelope import parse_json, unwrap
from signer.core.errors import VerificationError

MIN_SECRET_CHARS = 12
"""Shorter values (a test's ``api_key = "k"``) would match ordinary text; none of the
suite's real secrets is that short."""
LOG_SUFFIXES = (".log", ".err", ".out")
MAX_LOG_BYTES = 64 << 20  # of each file: a storm's access log is long, its head is enough
_CANDIDATE = re.compile(r"[A-Za-z0-9*_\-]{64,}")
"""A run of the UserSig alphabet long enough to be a token (the shortest, v2, is ~150)."""
_PEM_BODY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", re.S)
_SECRET_SETTINGS = ("secret", "api_key")


@dataclass(frozen=True)
class Leak:
    where: str  # a file and line, or the test whose output it was
    what: str  # which secret, or "a UserSig"; never the value itself

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def is_token(text: str) -> bool:
    """True if ``text`` decodes as a UserSig (the url map, base64, zlib and its JSON)."""
    try:
        fields = parse_json(unwrap(text))
    except (VerificationError, ValueError):
        return False
    return "TLS.ver" in fields or "TLS.version" in fields  # v2 names it one way, v1 the other


@dataclass
class Secrets:
    """Named secret values; the name says where each came from, for the report."""

    values: dict[str, str] = field(default_factory=dict)

    def add(self, value: str, name: str) -> None:
        value = value.strip()
        if len(value) >= MIN_SECRET_CHARS:
            self.values.setdefault(value, name)

    def add_file(self, path: Path, name: str) -> None:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            return
        bodies = _PEM_BODY.findall(text)
        if not bodies:
            self.add(text, name)
        for body in bodies:  # each base64 line of the key, as a log would show a piece
            for line in body.split():
                self.add(line, name)


def collect_secrets(root: Path, constants: Iterable[tuple[str, str]] = ()) -> Secrets:
    """Every secret the files under ``root`` hold or name, and ``constants``."""
    secrets = Secrets()
    for value, name in constants:
        secrets.add(value, name)
    for path in _files(root):
        if path.suffix == ".toml":
            _from_config(path, secrets)
        elif path.suffix in (".pem", ".key") or path.name.endswith("api-key"):
            secrets.add_file(path, f"the key in {path.name}")
    return secrets


def _from_config(path: Path, secrets: Secrets) -> None:
    try:
        config = tomllib.loads(path.read_text(errors="replace"))
    except (OSError, tomllib.TOMLDecodeError):
        return
    for setting, value in _settings(config):
        name = f"{setting} of {path.name}"
        if setting.endswith("_file") and isinstance(value, str):
            secrets.add_file(path.parent / value, name)
        elif setting.rsplit(".", 1)[-1] in _SECRET_SETTINGS and isinstance(value, str):
            secrets.add(value, name)


def _settings(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _settings(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _settings(item, f"{prefix}[{index}]")
    else:
        yield prefix, node


def _files(root: Path) -> Iterator[Path]:
    if root.is_dir():
        yield from (path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


def log_files(root: Path) -> Iterator[Path]:
    return (path for path in _files(root) if path.suffix in LOG_SUFFIXES)


def scan_text(text: str, where: str, secrets: Secrets) -> Iterator[Leak]:
    """Each secret is looked for in the whole text at once (``in`` runs at memory speed;
    the suite's logs are tens of MB and its secrets hundreds), then placed on its line."""
    for value, name in secrets.values.items():
        start = text.find(value)
        while start >= 0:  # one leak a line
            yield Leak(f"{where}:{_line_of(text, start)}", name)
            end = text.find("\n", start)
            start = -1 if end < 0 else text.find(value, end)
    for match in _CANDIDATE.finditer(text):
        if is_token(match.group()):
            yield Leak(f"{where}:{_line_of(text, match.start())}", "a UserSig")


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def scan_logs(root: Path, secrets: Secrets) -> Iterator[Leak]:
    for path in log_files(root):
        with open(path, "rb") as handle:
            head = handle.read(MAX_LOG_BYTES)
        yield from scan_text(head.decode(errors="replace"), str(path.relative_to(root)), secrets)


class LeakWatch:
    """The pytest plugin: records this process's log events and each test's stderr and
    captured log into ``in-process.log`` of the session's temp dir, and at the end of the
    session scans every log there, failing the run on a leak."""

    def __init__(self, root: Path, constants: Iterable[tuple[str, str]] = ()) -> None:
        self.root = root
        self.constants = list(constants)
        self.leaks: list[Leak] = []
        self._record = open(root / "in-process.log", "a", encoding="utf-8")  # noqa: SIM115

    def structlog_processor(self, logger: Any, method: str, event: dict[str, Any]) -> Any:
        """First in structlog's chain: every event as the test process would log it."""
        self._record.write(f"structlog {method}: {event!r}\n")
        return event

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when != "teardown":  # the last report of a test carries all its output
            return
        for text in (report.capstderr, report.caplog):
            if text:
                self._record.write(f"--- {report.nodeid}\n{text}\n")

    def pytest_sessionfinish(self, session: Any) -> None:
        self._record.close()
        self.leaks = list(scan_logs(self.root, collect_secrets(self.root, self.constants)))
        if self.leaks:
            session.exitstatus = 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.leaks:
            terminalreporter.section("secrets or tokens in the logs", red=True)
            for leak in self.leaks[:50]:
                terminalreporter.line(str(leak))
            terminalreporter.line(f"{len(self.leaks)} in all, under {self.root}")

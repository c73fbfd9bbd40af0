"""Structured logs: JSON in production, readable console lines in dev mode.

What is logged is chosen field by field; request bodies, the Authorization header and
issued tokens are never passed to a logger, so no setting can leak them.

A busy service writes an access line per request, so the JSON lines are made with orjson
and written as bytes, and the lines of one event-loop iteration reach the file in one
write (:class:`IterationBuffer`) instead of one write and flush each.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import sys
import time
from typing import IO, Any, BinaryIO, cast

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_threshold = logging.INFO


def info_enabled() -> bool:
    """Whether info lines are written: the access line's fields cost microseconds to
    gather, which a busy server at level warning should not spend."""
    return _threshold <= logging.INFO


class IterationBuffer:
    """A binary stream whose ``flush`` waits for the end of the event loop's iteration:
    the lines written meanwhile (one per request under load) go out in one write. Outside
    a running loop (start-up, shutdown, a supervisor) every flush is immediate, and what
    is buffered is written at exit."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lines: list[bytes] = []
        self._scheduled = False
        atexit.register(self._write_out)

    def write(self, data: bytes) -> int:
        self._lines.append(data)
        return len(data)

    def flush(self) -> None:
        if self._scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._write_out()
            return
        self._scheduled = True
        loop.call_soon(self._write_out)

    def _write_out(self) -> None:
        self._scheduled = False
        if self._lines:
            lines, self._lines = self._lines, []
            self._stream.write(b"".join(lines))
            self._stream.flush()


_access_stream: IterationBuffer | None = None
"""Where JSON access lines go, rendered here rather than by structlog (see
:func:`access_line`); None in console format."""
_second = -1
_second_text = ""


def _timestamp() -> str:
    """Now as structlog's ISO UTC stamp, the date and time formatted once a second."""
    global _second, _second_text
    now = time.time()
    second = int(now)
    if second != _second:
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second_text}.{int((now - second) * 1_000_000):06d}Z"


_ACCESS = (
    b'{"request_id":%b,"method":%b,"route":%b,"status":%d,"caller":%b,"sdkappid":%b,'
    b'"outcome":%b,"latency_ms":%b,"event":"request","level":"info","timestamp":"%b"}\n'
)
_quoted: dict[str | None, bytes] = {None: b"null"}
"""JSON of the few strings an access line repeats (methods, routes, callers, outcomes)."""


def _json(text: str | None) -> bytes:
    found = _quoted.get(text)
    if found is None:
        found = orjson.dumps(text)
        if len(_quoted) < 4096:  # a bound, whatever a client sends as a method
            _quoted[text] = found
    return found


def access_line(
    request_id: str,
    method: str,
    route: str,
    status: int,
    caller: str | None,
    sdkappid: int | None,
    outcome: str,
    seconds: float,
) -> None:
    """The access line of one request, at info level (the caller checked
    :func:`info_enabled`). In JSON format it is rendered here as structlog renders every
    other line (the fields, then ``event``, ``level`` and ``timestamp``) but with one
    format string: the processor chain, a dict and a generic encoder cost a request about
    a tenth of its time on the warm path (docs/PERFORMANCE.md)."""
    stream = _access_stream
    latency_ms = round(seconds * 1000, 3)
    if stream is None:
        _access_log.info(
            "request",
            request_id=request_id,
            method=method,
            route=route,
            status=status,
            caller=caller,
            sdkappid=sdkappid,
            outcome=outcome,
            latency_ms=latency_ms,
        )
        return
    stream.write(
        _ACCESS
        % (
            orjson.dumps(request_id),
            _json(method),
            _json(route),
            status,
            _json(caller),
            b"null" if sdkappid is None else b"%d" % sdkappid,
            _json(outcome),
            repr(latency_ms).encode(),
            _timestamp().encode(),
        )
    )
    stream.flush()


def configure(log_format: str, level: str) -> None:
    global _threshold, _access_stream  # one process, one logging configuration
    _threshold = _LEVELS[level]
    renderer: Any
    factory: Any
    _access_stream = None
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        _access_stream = IterationBuffer(sys.stderr.buffer)
        # BytesLogger needs only write and flush of its file.
        factory = structlog.BytesLoggerFactory(file=cast(BinaryIO, _access_stream))
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        factory = structlog.WriteLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=_LEVELS[level], stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # we write our own


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


_access_log = get_logger("signer.access")

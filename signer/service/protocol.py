"""The connection layer: what happens to a connection's bytes before they are a request.

aiohttp parses HTTP in one ``RequestHandler`` per connection. Left as it is, it answers a
request it cannot parse in ``text/plain`` echoing the offending bytes, and logs those bytes
with a traceback at ERROR level: a header line ``Authorization: Bearer <key>\\x01`` put the
API key in the log, a body after bare ``\\n`` line endings put a token there. It has no time
limit on request headers (slowloris) and no cap on open connections.

:class:`GuardedRequestHandler` answers every protocol-level error as our JSON error, logs one
short line without any request bytes, closes a connection whose request headers do not
arrive within ``header_timeout`` (408) and refuses connections beyond ``max_connections``
(503). Log lines about malformed traffic are rate limited, so nobody can flood the log.

aiohttp has no public hook to choose the connection handler class: :class:`GuardedRunner`
overrides ``AppRunner._make_server``, and the handler reads ``RequestHandler`` internals
(``_request_count``, ``_request_in_progress``). pyproject.toml pins the aiohttp releases this
is tested against (``tests/service/test_protocol.py``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from signer.service import errors
from signer.service.errors import ApiError, from_http_exception
from signer.service.logs import get_logger

log = get_logger("signer.http")


def raw_error(error: ApiError) -> bytes:
    """``error`` as a whole HTTP/1.1 response that closes the connection, for the moments
    when no request object exists yet (a refused connection, headers that never came)."""
    body = orjson.dumps(error.body())
    head = [
        f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in error.headers.items()),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class LogBudget:
    """At most ``per_second`` lines a second about hostile or broken traffic; the lines
    withheld are counted and named in the next line written."""

    per_second: float = 10.0
    clock: Any = time.monotonic
    _allowance: float = 10.0
    _updated: float = 0.0
    suppressed: int = 0

    def take(self) -> int | None:
        """None if this line must be withheld, else how many were withheld before it."""
        now = self.clock()
        self._allowance = min(
            self.per_second, self._allowance + (now - self._updated) * self.per_second
        )
        self._updated = now
        if self._allowance < 1:
            self.suppressed += 1
            return None
        self._allowance -= 1
        withheld, self.suppressed = self.suppressed, 0
        return withheld


@dataclass
class ConnectionGuard:
    """The limits of one process's connections and what they have caught (for /metrics)."""

    header_timeout: float = 10.0
    max_connections: int = 10_000
    open: int = 0
    refused: int = 0
    header_timeouts: int = 0
    malformed: int = 0
    budget: LogBudget = field(default_factory=LogBudget)

    def note(self, event: str, **fields: Any) -> None:
        """One short warning line, within the log budget."""
        withheld = self.budget.take()
        if withheld is None:
            return
        if withheld:
            fields["withheld"] = withheld  # similar lines not written since the last one
        log.warning(event, **fields)


# What each parse failure is called in the answer. aiohttp's own messages quote the bytes
# they choked on, so none of them is ever passed on.
_PARSE_ERRORS: tuple[tuple[type[HttpProcessingError], type[ApiError], str], ...] = (
    (BadHttpMethod, errors.BadMethod, "the request line has no valid HTTP method"),
    (BadStatusLine, errors.BadRequestLine, "the request line is not 'METHOD target HTTP/1.x'"),
    (InvalidURLError, errors.BadRequestTarget, "the request target is not a valid path"),
    (LineTooLong, errors.LineTooLong, "the request line or a header line is too long"),
    (InvalidHeader, errors.BadHeader, "a header is not valid HTTP"),
)


def describe_parse_error(exc: BaseException | None) -> ApiError:
    """The error answered to a request aiohttp could not parse."""
    for kind, error, message in _PARSE_ERRORS:
        if isinstance(exc, kind):
            if isinstance(exc, LineTooLong) and len(exc.args) > 1:
                message += f" (the limit is {exc.args[1]} bytes)"
            return error(message)
    return errors.MalformedRequest("the request is not valid HTTP/1.1")


class GuardedRequestHandler(RequestHandler):
    """aiohttp's connection handler with JSON errors, quiet logs and connection limits."""

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._counted = False
        self._awaiting_headers = True
        self._header_timer: asyncio.TimerHandle | None = None

    # -- connection limits -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        guard = self._guard
        if guard.open >= guard.max_connections:
            guard.refused += 1
            refusal = raw_error(
                errors.TooManyConnections(
                    f"this process holds its limit of {guard.max_connections} connections; retry"
                )
            )
            self._send_and_close(refusal)
            guard.note("connection refused: too many open", limit=guard.max_connections)
            return
        guard.open += 1
        self._counted = True
        self._arm_header_timer()  # the first request's headers are due from the start

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._counted:
            self._counted = False
            self._guard.open -= 1
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:  # a whole request head (or a parse error) arrived
            self._awaiting_headers = False
            if self._header_timer is not None:
                self._disarm_header_timer()
        elif self._awaiting_headers and data and self._header_timer is None:
            # Part of a head: the next request on a kept-alive connection has begun. (A head
            # that arrives whole, the usual case, never costs a timer.)
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self._loop.call_later(
            self._guard.header_timeout, self._headers_too_late
        )

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_late(self) -> None:
        self._header_timer = None
        if not self._awaiting_headers or self._request_in_progress or self.transport is None:
            return
        guard = self._guard
        guard.header_timeouts += 1
        self._send_and_close(
            raw_error(
                errors.HeaderTimeout(
                    f"the request headers did not arrive within {guard.header_timeout:g} s"
                )
            )
        )
        guard.note("request headers timed out", timeout_s=guard.header_timeout)

    def _send_and_close(self, response: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(response)
        self.force_close()

    # -- errors and logs -------------------------------------------------------------------

    async def finish_response(
        self, request: BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        if isinstance(resp, web.HTTPException):
            # Raised before any route's edge ran: CONNECT, "OPTIONS *", a path that no
            # pattern can match. Ours are shaped by the edge already.
            resp = from_http_exception(resp).response()
        try:
            return await super().finish_response(request, resp, start_time)
        finally:
            self._awaiting_headers = not self._messages

    def handle_error(
        self,
        request: BaseRequest,
        status: int = HTTPStatus.INTERNAL_SERVER_ERROR,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """The answer to a request that never reached a route: one it could not parse
        (aiohttp's ``status`` 400), a handler that timed out (504) or crashed (500)."""
        error: ApiError
        if status == HTTPStatus.BAD_REQUEST:
            self._guard.malformed += 1
            error = describe_parse_error(exc)
            self._guard.note(
                "malformed request", status=error.status, code=error.code, peer=request.remote
            )
        else:
            timed_out = status == HTTPStatus.GATEWAY_TIMEOUT
            error = (errors.HandlerTimeout if timed_out else errors.InternalError)("internal error")
            self._guard.note(
                "request failed in the HTTP layer", status=error.status, peer=request.remote
            )
        if request.writer.output_size > 0:  # as aiohttp: a response has begun, cannot answer
            raise ConnectionError("response already started; cannot send the error")
        response = error.response()
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's own error lines name the exception only: their text and traceback may
        quote request bytes."""
        exc = kw.get("exc_info")
        error = type(exc).__name__ if isinstance(exc, BaseException) else "unknown"
        self._guard.note("error in the HTTP layer", error=error)

    def log_debug(self, *args: Any, **kw: Any) -> None:
        return None  # aiohttp's debug lines may quote request bytes too


class GuardedServer(web.Server):
    """A ``web.Server`` whose connections get :class:`GuardedRequestHandler`;
    ``handler_options`` are ``RequestHandler``'s keyword arguments."""

    def __init__(
        self,
        handler: Any,
        *,
        guard: ConnectionGuard,
        handler_options: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.guard = guard
        self.handler_options = handler_options

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, self.guard, loop=self._loop, **self.handler_options)


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` serving the app through :class:`GuardedServer`."""

    def __init__(
        self,
        app: web.Application,
        guard: ConnectionGuard,
        *,
        shutdown_timeout: float,
        **handler_options: Any,
    ) -> None:
        super().__init__(app, handle_signals=False, shutdown_timeout=shutdown_timeout)
        self.guard = guard
        self.handler_options = handler_options

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()  # also starts the application
        return GuardedServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            guard=self.guard,
            handler_options=self.handler_options,
        )

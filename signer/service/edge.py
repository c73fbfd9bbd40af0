"""What every request passes around its handler: request id, auth, rate limit, error
shaping, metrics and the access log line (whose ``outcome`` is ``ok`` or the error code).

Each handler is wrapped once, when the routes are registered, instead of running this as an
aiohttp middleware: an aiohttp middleware costs every request a measurable share of a bare
handler's cost before it does anything (see docs/PERFORMANCE.md).
"""

from __future__ import annotations

import itertools
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from aiohttp import hdrs, web
from multidict import istr

from signer.core import SignerError
from signer.service.auth import authenticate
from signer.service.errors import ApiError, InternalError, from_http_exception, from_signer_error
from signer.service.keys import CALLER, SDKAPPID, STATE
from signer.service.logs import access_line, get_logger, info_enabled

X_REQUEST_ID = istr("X-Request-ID")
# A metrics label must not take any value a client sends: other methods count as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = get_logger("signer.access")


_PROCESS_TAG = uuid.uuid4().hex[:16]
_sequence = itertools.count(1)


def _request_id(request: web.Request) -> str:
    """The caller's X-Request-ID if it is sane, else a process tag and a counter: unique,
    and no random-number syscall per request."""
    given = request.headers.get(X_REQUEST_ID)
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{_PROCESS_TAG}{next(_sequence):016x}"


def guarded(handler: Handler, route: str, authenticated: bool = True) -> Handler:
    """``handler`` wrapped in the edge: ``route`` labels its metrics and access lines."""

    async def edge(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        request_id = _request_id(request)
        start = time.perf_counter()
        caller = None
        response: web.StreamResponse
        try:
            if authenticated:
                caller = authenticate(state.runtime, request.headers.get(hdrs.AUTHORIZATION))
                request[CALLER] = caller
                if state.runtime.settings.rate_limit.enabled:
                    state.limiter.check(caller.name)
            response = await handler(request)
            # An answer returned rather than raised is a success, but for /readyz's 503
            # while the pool starts: its body is the readiness report, not an error.
            outcome = "ok" if response.status < HTTPStatus.BAD_REQUEST else "error"
        except Exception as exc:
            if isinstance(exc, ApiError):
                error = exc
            elif isinstance(exc, SignerError):
                error = from_signer_error(exc)
            elif isinstance(exc, web.HTTPException):
                error = from_http_exception(exc)
            else:
                log.exception("unhandled error", request_id=request_id, path=request.path)
                error = InternalError(f"internal error (request id {request_id})")
            response, outcome = error.response(), error.code
        response.headers[X_REQUEST_ID] = request_id
        seconds = time.perf_counter() - start
        method = request.method if request.method in _METHODS else "OTHER"
        state.metrics.observe(route, method, response.status, seconds)
        if info_enabled():
            access_line(
                request_id,
                request.method,
                route,
                response.status,
                caller.name if caller else None,
                request.get(SDKAPPID),
                outcome,
                seconds,
            )
        return response

    edge.__name__ = edge.__qualname__ = getattr(handler, "__name__", "handler")
    return edge


async def not_found(request: web.Request) -> web.StreamResponse:
    raise web.HTTPNotFound()


def method_not_allowed(allowed: list[str]) -> Handler:
    async def refuse(request: web.Request) -> web.StreamResponse:
        raise web.HTTPMethodNotAllowed(request.method, allowed)

    return refuse

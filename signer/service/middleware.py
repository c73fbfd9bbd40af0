"""The one middleware every request passes: request id, auth, rate limit, error shaping,
metrics and the access log line."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from aiohttp import web

from signer.config import Caller
from signer.core import SignerError
from signer.service.auth import authenticate
from signer.service.errors import ApiError, from_http_exception, from_signer_error
from signer.service.handlers import CALLER, OUTCOME, SDKAPPID, STATE
from signer.service.logs import get_logger, info_enabled

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/docs")
log = get_logger("signer.access")


_PROCESS_TAG = uuid.uuid4().hex[:16]
_sequence = itertools.count(1)


def _request_id(request: web.Request) -> str:
    """The caller's X-Request-ID if it is sane, else a process tag and a counter: unique,
    and no random-number syscall per request."""
    given = request.headers.get("X-Request-ID")
    if given and _REQUEST_ID.fullmatch(given):
        return given
    return f"{_PROCESS_TAG}{next(_sequence):016x}"


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
    state = request.app[STATE]
    request_id = _request_id(request)
    start = time.perf_counter()
    caller = None
    response: web.StreamResponse
    try:
        if not request.path.startswith(PUBLIC_PREFIXES):
            caller = authenticate(state.runtime, request.headers.get("Authorization"))
            request[CALLER] = caller
            if state.runtime.settings.rate_limit.enabled:
                state.limiter.check(caller.name)
        response = await handler(request)
    except ApiError as exc:
        response, request[OUTCOME] = exc.response(), exc.code
    except SignerError as exc:
        error = from_signer_error(exc)
        response, request[OUTCOME] = error.response(), error.code
    except web.HTTPException as exc:
        error = from_http_exception(exc)
        response, request[OUTCOME] = error.response(), error.code
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error", request_id=request_id, path=request.path)
        response = ApiError(
            500, "internal_error", f"internal error (request id {request_id})"
        ).response()
    response.headers["X-Request-ID"] = request_id
    seconds = time.perf_counter() - start
    route = _route_name(request)
    state.metrics.observe(route, request.method, response.status, seconds)
    if info_enabled():
        _access_line(request, request_id, route, response, caller, seconds)
    return response


def _access_line(
    request: web.Request,
    request_id: str,
    route: str,
    response: web.StreamResponse,
    caller: Caller | None,
    seconds: float,
) -> None:
    log.info(
        "request",
        request_id=request_id,
        method=request.method,
        route=route,
        status=response.status,
        caller=caller.name if caller else None,
        sdkappid=request.get(SDKAPPID),
        outcome=response.headers.get("X-Signer-Outcome")
        or ("ok" if response.status < 400 else "error"),
        latency_ms=round(seconds * 1000, 3),
    )

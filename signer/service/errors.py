"""Every failure of the HTTP API as ``{"error": {"code", "message", "field"?}}``.

Handlers raise :class:`ApiError` or let a core/engine error through; the edge maps
both here, in one place, to a status code. Anything unexpected becomes a 500 with a request
id to quote, and its traceback goes to the log, never to the client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from signer.cache.base import RevocationNotRecorded
from signer.core import InvalidArgument, InvalidUserId, SignerError
from signer.engine import EngineClosed, Overloaded, UnknownApp, WorkerCrashed

RETRY_AFTER_OVERLOADED = 1


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            detail["field"] = self.field
        return {"error": detail}

    def response(self) -> web.Response:
        return web.Response(
            body=orjson.dumps(self.body()),
            status=self.status,
            content_type="application/json",
            headers=self.headers,
        )


def from_signer_error(exc: SignerError) -> ApiError:
    """The API error for a core or engine error (also used per item in batches)."""
    if isinstance(exc, InvalidUserId):
        return ApiError(422, "invalid_userid", exc.message, "userid")
    if isinstance(exc, InvalidArgument):
        return ApiError(422, f"invalid_{exc.field}", exc.message, exc.field)
    if isinstance(exc, UnknownApp):
        return ApiError(404, "unknown_sdkappid", exc.message, "sdkappid")
    if isinstance(exc, Overloaded):
        retry = str(max(1, round(exc.retry_after)))
        return ApiError(503, "overloaded", exc.message, headers={"Retry-After": retry})
    if isinstance(exc, EngineClosed):
        return ApiError(503, "shutting_down", exc.message, headers={"Retry-After": "1"})
    if isinstance(exc, WorkerCrashed):
        return ApiError(503, "signing_unavailable", exc.message, headers={"Retry-After": "1"})
    return ApiError(500, "signing_failed", "the token could not be signed")


def from_revocation_error(exc: RevocationNotRecorded) -> ApiError:
    """A logout or ban the shared cache could not take. Nothing says it happened, so it is
    an error the caller must act on (retry), never a success with ``evicted: 0``."""
    return ApiError(
        503,
        "revocation_not_recorded",
        "the revocation could not be recorded in the shared cache, so other instances may "
        "still serve the user's tokens; this instance's copies were dropped. Retry the DELETE",
        headers={"Retry-After": str(max(1, math.ceil(exc.retry_after)))},
    )


def from_validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problems)"
    return ApiError(422, "invalid_field", f"{field}: {message}" if field else message, field)


def from_http_exception(exc: web.HTTPException) -> ApiError:
    """aiohttp's own errors (404 route, 405, 413 from the body cap) in our shape."""
    codes = {
        404: ("not_found", "no such route"),
        405: ("method_not_allowed", f"method not allowed; allowed: {exc.headers.get('Allow', '')}"),
        413: ("body_too_large", "request body is larger than the configured cap"),
    }
    code, message = codes.get(exc.status, (exc.reason.lower().replace(" ", "_"), exc.reason))
    headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}
    return ApiError(exc.status, code, message, headers=headers)

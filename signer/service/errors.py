"""Every failure of the HTTP API as ``{"error": {"code", "message", "field"?}}``.

Each failure is a type (:class:`Unauthenticated`, :class:`RateLimited`, ...), and
:data:`ERRORS` is the one table that gives each type its status, its code and the headers
it carries: what a 401 or a 429 looks like is written once, here. Handlers, auth, the
state and the connection layer raise the types with what only they know (the message, the
field, how long to wait); core and engine errors, pydantic's and aiohttp's own are
translated to them below. Anything unexpected becomes a 500 with a request id to quote,
and its traceback goes to the log, never to the client.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from pydantic import ValidationError

from signer.cache.base import RevocationNotRecorded
from signer.core import InvalidArgument, InvalidUserId, SignerError
from signer.engine import EngineClosed, Overloaded, UnknownApp, WorkerCrashed

WWW_AUTHENTICATE = "WWW-Authenticate"
RETRY_AFTER = "Retry-After"
ALLOW = "Allow"
BEARER_CHALLENGE = 'Bearer realm="signer"'


class ApiError(Exception):
    """An error answer: the subclass says what went wrong, :data:`ERRORS` how that is
    answered. ``retry_after`` (seconds; at least 1 is sent) is the value of Retry-After
    for the types that carry it, ``allow`` the value of Allow for the one that does."""

    def __init__(
        self,
        message: str,
        field: str | None = None,
        *,
        retry_after: int = 1,
        allow: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.allow = allow

    @property
    def status(self) -> int:
        return ERRORS[type(self)].status

    @property
    def code(self) -> str:
        return ERRORS[type(self)].code.format(field=self.field)

    @property
    def headers(self) -> dict[str, str]:
        values = {
            WWW_AUTHENTICATE: BEARER_CHALLENGE,
            RETRY_AFTER: str(max(1, self.retry_after)),
            ALLOW: self.allow,
        }
        return {name: values[name] for name in ERRORS[type(self)].headers}

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


# -- the request: its connection, headers and body ---------------------------------------


class MalformedRequest(ApiError):
    """Not valid HTTP/1.1 (the connection layer: the request never reached a route)."""


class BadMethod(MalformedRequest):
    """The request line has no valid method."""


class BadRequestLine(MalformedRequest):
    """The request line is not ``METHOD target HTTP/1.x``."""


class BadRequestTarget(MalformedRequest):
    """The request target is not a valid path."""


class LineTooLong(MalformedRequest):
    """The request line or a header line is over its limit."""


class BadHeader(MalformedRequest):
    """A header is not valid HTTP."""


class HeaderTimeout(ApiError):
    """The request headers did not arrive within ``header_timeout`` (slowloris)."""


class TooManyConnections(ApiError):
    """This process holds ``max_connections`` open connections already."""


class Unauthenticated(ApiError):
    """No API key, not ``Bearer <key>``, or a key no caller has."""


class Forbidden(ApiError):
    """The caller may not use the app it names."""


class RateLimited(ApiError):
    """The caller is over its rate limit."""


class NotFound(ApiError):
    """No route has this path."""


class MethodNotAllowed(ApiError):
    """The path has no route for this method."""


class UnsupportedMediaType(ApiError):
    """The body is not ``application/json``."""


class UnsupportedContentEncoding(ApiError):
    """The body is in a coding aiohttp cannot undo, or in several."""


class BodyTimeout(ApiError):
    """The body did not arrive within ``body_timeout``."""


class BodyTooLarge(ApiError):
    """The body, once decoded, is over ``max_body_bytes``."""


class MalformedBody(ApiError):
    """The body could not be read: not in its Content-Encoding, or cut short."""


class MalformedJson(ApiError):
    """The body is not one JSON object, or gives a key twice."""


# -- what the request asks for -----------------------------------------------------------


class InvalidField(ApiError):
    """A field fails its schema (type, range, length): pydantic's verdict, or the same
    rule checked by hand where there is no model (a path, a raw query string)."""


class InvalidValue(ApiError):
    """A value the core refused (``InvalidArgument``); the code names the field."""


class UserIdPolicyViolation(ApiError):
    """The userid breaks the app's userid policy (control character, byte limit)."""


class InvalidExpire(ApiError):
    """``expire`` is outside the app's ``min_expire``..``max_expire``."""


class TooManyUserIds(ApiError):
    """A batch of more than ``max_batch_userids``."""


class UnknownSdkAppId(ApiError):
    """No app has this sdkappid (asked by a caller allowed every app)."""

    def __init__(self, sdkappid: int) -> None:
        super().__init__(f"no app with sdkappid {sdkappid}", "sdkappid")


# -- the service -------------------------------------------------------------------------


class ServiceOverloaded(ApiError):
    """The signing queue is full."""


class ShuttingDown(ApiError):
    """The engine is closing (the process drains)."""


class SigningUnavailable(ApiError):
    """The worker pool is being rebuilt after a crash."""


class RevocationUnrecorded(ApiError):
    """A logout or ban the shared cache could not take: nothing says it happened, so it is
    an error the caller must act on (retry), never a success with ``evicted: 0``."""


class NotReady(ApiError):
    """``/readyz`` while the signing pool is not up. Only its status is used: the answer's
    body is the readiness report."""


class SigningFailed(ApiError):
    """The engine failed in a way it does not name (a bug): never for bad input."""


class InternalError(ApiError):
    """Anything unexpected; the message carries the request id to quote."""


class HandlerTimeout(ApiError):
    """aiohttp's own answer to a handler that timed out outside the edge."""


@dataclass(frozen=True)
class ErrorSpec:
    """How one type of error is answered. ``code`` may name the field (``{field}``);
    ``headers`` are the ones the answer carries (values: :attr:`ApiError.headers`)."""

    status: int
    code: str
    headers: tuple[str, ...] = ()


ERRORS: dict[type[ApiError], ErrorSpec] = {
    MalformedRequest: ErrorSpec(400, "malformed_request"),
    BadMethod: ErrorSpec(400, "bad_method"),
    BadRequestLine: ErrorSpec(400, "bad_request_line"),
    BadRequestTarget: ErrorSpec(400, "bad_request_target"),
    LineTooLong: ErrorSpec(400, "line_too_long"),
    BadHeader: ErrorSpec(400, "bad_header"),
    MalformedBody: ErrorSpec(400, "malformed_body"),
    MalformedJson: ErrorSpec(400, "malformed_json"),
    Unauthenticated: ErrorSpec(401, "unauthenticated", (WWW_AUTHENTICATE,)),
    Forbidden: ErrorSpec(403, "forbidden"),
    NotFound: ErrorSpec(404, "not_found"),
    UnknownSdkAppId: ErrorSpec(404, "unknown_sdkappid"),
    MethodNotAllowed: ErrorSpec(405, "method_not_allowed", (ALLOW,)),
    HeaderTimeout: ErrorSpec(408, "header_timeout"),
    BodyTimeout: ErrorSpec(408, "body_timeout"),
    BodyTooLarge: ErrorSpec(413, "body_too_large"),
    UnsupportedMediaType: ErrorSpec(415, "unsupported_media_type"),
    UnsupportedContentEncoding: ErrorSpec(415, "unsupported_content_encoding"),
    InvalidField: ErrorSpec(422, "invalid_field"),
    InvalidValue: ErrorSpec(422, "invalid_{field}"),
    UserIdPolicyViolation: ErrorSpec(422, "invalid_userid"),
    InvalidExpire: ErrorSpec(422, "invalid_expire"),
    TooManyUserIds: ErrorSpec(422, "too_many_userids"),
    RateLimited: ErrorSpec(429, "rate_limited", (RETRY_AFTER,)),
    SigningFailed: ErrorSpec(500, "signing_failed"),
    InternalError: ErrorSpec(500, "internal_error"),
    ServiceOverloaded: ErrorSpec(503, "overloaded", (RETRY_AFTER,)),
    ShuttingDown: ErrorSpec(503, "shutting_down", (RETRY_AFTER,)),
    SigningUnavailable: ErrorSpec(503, "signing_unavailable", (RETRY_AFTER,)),
    RevocationUnrecorded: ErrorSpec(503, "revocation_not_recorded", (RETRY_AFTER,)),
    TooManyConnections: ErrorSpec(503, "too_many_connections", (RETRY_AFTER,)),
    NotReady: ErrorSpec(503, "not_ready"),
    HandlerTimeout: ErrorSpec(504, "internal_error"),
}


# What each status means, as the API's documentation (/openapi.json) says it.
STATUS_TEXT = {
    400: "Malformed JSON",
    401: "Missing or unknown API key",
    403: "Caller may not use this app",
    404: "Unknown sdkappid",
    408: "Body not received in time (server.body_timeout)",
    413: "Body too large",
    415: "Body is not application/json",
    422: "Invalid field (userid policy, expire range, ...)",
    429: "Rate limited (see Retry-After)",
    503: "Overloaded or starting (see Retry-After)",
    500: "Internal error (never for bad input); quote the X-Request-ID",
}


def status_of(kind: type[ApiError]) -> int:
    """The status every error of type ``kind`` is answered with."""
    return ERRORS[kind].status


class HttpError(ApiError):
    """A refusal of aiohttp's own that :data:`ERRORS` has no type for (417 for an
    ``Expect`` it does not know, say): aiohttp's status, a code made of its reason."""

    def __init__(self, exc: web.HTTPException) -> None:
        super().__init__(exc.reason)
        self._status = exc.status
        self._headers = {k: v for k, v in exc.headers.items() if k in (ALLOW, RETRY_AFTER)}

    @property
    def status(self) -> int:
        return self._status

    @property
    def code(self) -> str:
        return self.message.lower().replace(" ", "_")

    @property
    def headers(self) -> dict[str, str]:
        return self._headers


def from_signer_error(exc: SignerError) -> ApiError:
    """The API error for a core or engine error (also used per item in batches)."""
    if isinstance(exc, InvalidUserId):
        return UserIdPolicyViolation(exc.message, "userid")
    if isinstance(exc, InvalidArgument):
        return InvalidValue(exc.message, exc.field)
    if isinstance(exc, UnknownApp):
        return UnknownSdkAppId(exc.sdkappid)
    if isinstance(exc, Overloaded):
        return ServiceOverloaded(exc.message, retry_after=round(exc.retry_after))
    if isinstance(exc, EngineClosed):
        return ShuttingDown(exc.message)
    if isinstance(exc, WorkerCrashed):
        return SigningUnavailable(exc.message)
    return SigningFailed("the token could not be signed")


def from_revocation_error(exc: RevocationNotRecorded) -> ApiError:
    """A logout or ban the shared cache could not take (:class:`RevocationUnrecorded`)."""
    return RevocationUnrecorded(
        "the revocation could not be recorded in the shared cache, so other instances may "
        "still serve the user's tokens; this instance's copies were dropped. Retry the DELETE",
        retry_after=math.ceil(exc.retry_after),
    )


def from_validation_error(exc: ValidationError) -> ApiError:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    if len(exc.errors()) > 1:
        message += f" (and {len(exc.errors()) - 1} more problems)"
    return InvalidField(f"{field}: {message}" if field else message, field)


def from_http_exception(exc: web.HTTPException) -> ApiError:
    """aiohttp's own errors (404 route, 405, 413 from the body cap) in our shape."""
    if exc.status == HTTPStatus.NOT_FOUND:
        return NotFound("no such route")
    if exc.status == HTTPStatus.METHOD_NOT_ALLOWED:
        allowed = exc.headers.get(ALLOW, "")
        return MethodNotAllowed(f"method not allowed; allowed: {allowed}", allow=allowed)
    if exc.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
        return BodyTooLarge("request body is larger than the configured cap")
    return HttpError(exc)

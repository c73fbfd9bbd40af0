"""The route table: one list that both wires the aiohttp router and writes the OpenAPI.

Each route names the error types it may answer with; their statuses (from the table in
:mod:`~signer.service.errors`) are the error responses its OpenAPI operation lists."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from signer.service import handlers
from signer.service.errors import (
    ApiError,
    BodyTimeout,
    BodyTooLarge,
    Forbidden,
    InvalidExpire,
    InvalidField,
    InvalidValue,
    MalformedBody,
    MalformedJson,
    NotReady,
    RateLimited,
    RevocationUnrecorded,
    ServiceOverloaded,
    ShuttingDown,
    SigningUnavailable,
    TooManyUserIds,
    Unauthenticated,
    UnknownSdkAppId,
    UnsupportedContentEncoding,
    UnsupportedMediaType,
    UserIdPolicyViolation,
    status_of,
)
from signer.service.schemas import (
    BatchRequest,
    BatchResponse,
    EvictPath,
    EvictResponse,
    Health,
    PrivateMapKeyRequest,
    TokenResponse,
    UserSigQuery,
    UserSigRequest,
    VerifyRequest,
    VerifyResponse,
    WarmRequest,
    WarmResponse,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Errors = tuple[type[ApiError], ...]

CALLER_ERRORS: Errors = (Unauthenticated, Forbidden, RateLimited)
BODY_ERRORS: Errors = (
    MalformedJson,
    MalformedBody,
    BodyTimeout,
    BodyTooLarge,
    UnsupportedMediaType,
    UnsupportedContentEncoding,
)
SIGNING_ERRORS: Errors = (
    UnknownSdkAppId,
    InvalidField,
    InvalidValue,
    UserIdPolicyViolation,
    InvalidExpire,
    ServiceOverloaded,
    ShuttingDown,
    SigningUnavailable,
)
# A GET reads no body, but its operation has always listed the body's statuses too.
TOKEN_ERRORS: Errors = (*CALLER_ERRORS, *BODY_ERRORS, *SIGNING_ERRORS)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_parameters: type[BaseModel] | None = None  # one field per {placeholder}
    response: type[BaseModel] | None = None
    authenticated: bool = True
    raises: Errors = field(default=TOKEN_ERRORS)
    tag: str = "tokens"

    @property
    def errors(self) -> tuple[int, ...]:
        """The statuses of :attr:`raises`, in order: the operation's error responses."""
        return tuple(sorted({status_of(kind) for kind in self.raises}))


ROUTES: tuple[Route, ...] = (
    Route(
        "POST",
        "/v1/usersig",
        handlers.post_usersig,
        "Issue a UserSig (from cache if fresh)",
        body=UserSigRequest,
        response=TokenResponse,
    ),
    Route(
        "GET",
        "/v1/usersig",
        handlers.get_usersig,
        "Issue a UserSig (query parameters)",
        query=UserSigQuery,
        response=TokenResponse,
    ),
    Route(
        "POST",
        "/v1/usersig/batch",
        handlers.post_batch,
        "Issue UserSigs for up to 10,000 userids",
        body=BatchRequest,
        response=BatchResponse,
        raises=(*TOKEN_ERRORS, TooManyUserIds),
    ),
    Route(
        "POST",
        "/v1/usersig/warm",
        handlers.post_warm,
        "Sign tokens into the shared cache ahead of a known event (counts, no tokens)",
        body=WarmRequest,
        response=WarmResponse,
        raises=(*TOKEN_ERRORS, TooManyUserIds),
    ),
    Route(
        "DELETE",
        # (?s): a userid with a newline is refused with 422 like in a body, not unrouted.
        "/v1/usersig/{sdkappid}/{userid:(?s:.+)}",
        handlers.delete_usersig,
        "Evict a user's cached tokens on every instance (logout, ban)",
        path_parameters=EvictPath,
        response=EvictResponse,
        raises=(
            *CALLER_ERRORS,
            InvalidField,
            UserIdPolicyViolation,
            UnknownSdkAppId,
            RevocationUnrecorded,
        ),
    ),
    Route(
        "POST",
        "/v1/privatemapkey",
        handlers.post_privatemapkey,
        "Issue a TRTC room privilege token (PrivateMapKey)",
        body=PrivateMapKeyRequest,
        response=TokenResponse,
    ),
    Route(
        "POST",
        "/v1/verify",
        handlers.post_verify,
        "Verify a UserSig and say why it fails (Tencent's error codes)",
        body=VerifyRequest,
        response=VerifyResponse,
    ),
    Route(
        "GET",
        "/healthz",
        handlers.healthz,
        "Liveness",
        response=Health,
        authenticated=False,
        raises=(),
        tag="operations",
    ),
    Route(
        "GET",
        "/readyz",
        handlers.readyz,
        "Readiness: the signing pool is up",
        response=Health,
        authenticated=False,
        raises=(NotReady,),
        tag="operations",
    ),
    Route(
        "GET",
        "/metrics",
        handlers.metrics,
        "Prometheus metrics",
        authenticated=False,
        raises=(),
        tag="operations",
    ),
)

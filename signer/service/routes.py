"""The route table: one list that both wires the aiohttp router and writes the OpenAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import BaseModel

from signer.service import handlers
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
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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
    errors: tuple[int, ...] = field(default=(400, 401, 403, 404, 408, 413, 415, 422, 429, 503))
    tag: str = "tokens"


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
    ),
    Route(
        "DELETE",
        # (?s): a userid with a newline is refused with 422 like in a body, not unrouted.
        "/v1/usersig/{sdkappid}/{userid:(?s:.+)}",
        handlers.delete_usersig,
        "Evict a user's cached tokens on every instance (logout, ban)",
        path_parameters=EvictPath,
        response=EvictResponse,
        errors=(401, 403, 404, 422, 429, 503),
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
        errors=(),
        tag="operations",
    ),
    Route(
        "GET",
        "/readyz",
        handlers.readyz,
        "Readiness: the signing pool is up",
        response=Health,
        authenticated=False,
        errors=(503,),
        tag="operations",
    ),
    Route(
        "GET",
        "/metrics",
        handlers.metrics,
        "Prometheus metrics",
        authenticated=False,
        errors=(),
        tag="operations",
    ),
)

"""The error table: every type of error is answered with the status, code and headers
:data:`signer.service.errors.ERRORS` gives it, wherever it is raised; the OpenAPI lists
those statuses; the access line names the code."""

from __future__ import annotations

import ast
import gzip
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from structlog.testing import capture_logs

from signer.cache.base import RevocationNotRecorded
from signer.core import InvalidArgument, InvalidUserId, SignerError
from signer.engine import EngineClosed, Overloaded, UnknownApp, WorkerCrashed
from signer.service import errors
from signer.service.auth import RateLimiter
from signer.service.errors import ERRORS, ApiError, from_revocation_error, from_signer_error
from signer.service.keys import STATE
from signer.service.openapi import build_spec, openapi_path
from signer.service.protocol import raw_error
from signer.service.routes import ROUTES
from tests.service.conftest import (
    LIMITED_KEY,
    V1_APP,
    V2_APP,
    ClientFactory,
    Deployment,
    write_config,
)

SERVICE = Path(errors.__file__).parent
HEADERS = ("WWW-Authenticate", "Retry-After", "Allow")
DELETE_PATH = next(route.path for route in ROUTES if route.method == "DELETE")
WILDCARD_KEY = "wildcard-key-0123456789abcdef"  # a caller allowed every sdkappid


def _example(kind: type[ApiError]) -> ApiError:
    if kind is errors.UnknownSdkAppId:
        return errors.UnknownSdkAppId(7)
    return kind("what went wrong", "userid", retry_after=3, allow="GET,HEAD")


def _answer(headers: Any) -> dict[str, str]:
    """The headers of an answer that the table decides."""
    return {name: headers[name] for name in HEADERS if name in headers}


class TestErrorTable:
    @pytest.mark.parametrize("kind", list(ERRORS), ids=lambda kind: kind.__name__)
    def test_each_type_answers_its_status_code_and_headers(self, kind: type[ApiError]) -> None:
        """An error of each type is answered with its row of the table: the status, the
        code, and exactly the headers the row names (with sane values)."""
        spec = ERRORS[kind]
        error = _example(kind)
        response = error.response()
        assert response.status == spec.status
        assert error.body()["error"]["code"] == spec.code.format(field=error.field)
        answered = _answer(response.headers)
        assert set(answered) == set(spec.headers)
        if "Retry-After" in answered:
            assert answered["Retry-After"] == "3"
        if "WWW-Authenticate" in answered:
            assert answered["WWW-Authenticate"] == 'Bearer realm="signer"'
        if "Allow" in answered:
            assert answered["Allow"] == "GET,HEAD"

    def test_retry_after_is_at_least_a_second(self) -> None:
        """A wait computed as 0 still tells the client to wait (Retry-After: 1)."""
        assert errors.RateLimited("slow down", retry_after=0).headers == {"Retry-After": "1"}

    def test_connection_answers_are_rendered_from_the_table(self) -> None:
        """The raw answers of the connection layer (no request object yet) carry the
        table's status line and headers too."""
        raw = raw_error(errors.TooManyConnections("full"))
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.split(b"\r\n")[0] == b"HTTP/1.1 503 Service Unavailable"
        assert b"Retry-After: 1" in head.split(b"\r\n")
        assert body == b'{"error":{"code":"too_many_connections","message":"full"}}'

    @pytest.mark.parametrize(
        ("error", "kind", "code"),
        [
            (
                InvalidUserId("empty", "userid is empty"),
                errors.UserIdPolicyViolation,
                "invalid_userid",
            ),
            (InvalidArgument("room_id", "too big"), errors.InvalidValue, "invalid_room_id"),
            (UnknownApp(7), errors.UnknownSdkAppId, "unknown_sdkappid"),
            (Overloaded("queue full", 0.4), errors.ServiceOverloaded, "overloaded"),
            (EngineClosed("closing"), errors.ShuttingDown, "shutting_down"),
            (WorkerCrashed("gone"), errors.SigningUnavailable, "signing_unavailable"),
            (SignerError("?"), errors.SigningFailed, "signing_failed"),
        ],
        ids=lambda value: type(value).__name__ if isinstance(value, Exception) else "",
    )
    def test_core_and_engine_errors_have_their_type(
        self, error: SignerError, kind: type[ApiError], code: str
    ) -> None:
        """Each core or engine error becomes one typed API error."""
        translated = from_signer_error(error)
        assert type(translated) is kind and translated.code == code

    def test_a_refused_revocation_says_when_to_retry(self) -> None:
        """The shared cache's refusal is a 503 whose Retry-After rounds its wait up."""
        error = from_revocation_error(RevocationNotRecorded("redis", retry_after=1.2))
        assert (error.status, error.code, error.headers) == (
            503,
            "revocation_not_recorded",
            {"Retry-After": "2"},
        )

    async def test_an_unknown_sdkappid_is_one_answer(self, client: TestClient) -> None:
        """The app table's refusal and the engine's (a key gone in a reload) are the same
        answer, word for word."""
        with pytest.raises(ApiError) as raised:
            client.app[STATE].app(999)
        assert raised.value.body() == from_signer_error(UnknownApp(999)).body()
        assert raised.value.body() == {
            "error": {
                "code": "unknown_sdkappid",
                "message": "no app with sdkappid 999",
                "field": "sdkappid",
            }
        }

    def test_no_status_is_written_outside_the_table(self) -> None:
        """No module of the service but errors.py writes an HTTP error status as a number:
        not as ``status=``, not compared with a ``status``, not as a dict key, not as the
        first argument of an error or a response."""
        found = []
        for path in sorted(SERVICE.glob("*.py")):
            if path.name == "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                found += [f"{path.name}:{n.lineno}" for n in _status_literals(node)]
        assert found == []


def _is_status(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and 100 <= node.value < 600


def _status_literals(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Call):
        hits = [
            inner
            for keyword in node.keywords
            if keyword.arg in ("status", "errors")
            for inner in ast.walk(keyword.value)
            if _is_status(inner)
        ]
        name = node.func.attr if isinstance(node.func, ast.Attribute) else ""
        name = node.func.id if isinstance(node.func, ast.Name) else name
        if node.args and _is_status(node.args[0]) and name.lower().endswith(("error", "response")):
            hits.append(node.args[0])
        return hits
    if isinstance(node, ast.Compare):
        sides = [node.left, *node.comparators]
        named = any(
            (isinstance(side, ast.Name) and side.id == "status")
            or (isinstance(side, ast.Attribute) and side.attr == "status")
            for side in sides
        )
        return [side for side in sides if named and _is_status(side)]
    if isinstance(node, ast.Dict):
        return [key for key in node.keys if _is_status(key)]
    return []


class TestOpenApiAgrees:
    @pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
    def test_each_operation_lists_the_statuses_of_its_error_types(self, route: Any) -> None:
        """An operation's error responses are the table's statuses of the types its route
        names (and 500), no more and no fewer."""
        operation = build_spec(ROUTES)["paths"][openapi_path(route.path)][route.method.lower()]
        listed = {int(status) for status in operation["responses"]} - {200}
        assert all(kind in ERRORS for kind in route.raises)
        assert listed == {ERRORS[kind].status for kind in route.raises} | {500}


class TestErrorsAnswered:
    """Errors provoked through the real service: the answer is the table's row, its
    status is one the route's OpenAPI operation lists, and the access line names the
    code."""

    async def _check(
        self, response: Any, kind: type[ApiError], method: str, path: str | None
    ) -> None:
        spec = ERRORS[kind]
        body = await response.json()
        assert (response.status, body["error"]["code"]) == (spec.status, spec.code)
        assert set(_answer(response.headers)) == set(spec.headers)
        if path is not None:
            route = next(r for r in ROUTES if (r.method, r.path) == (method, path))
            assert response.status in route.errors

    async def test_the_caller(
        self, make_client: ClientFactory, client: TestClient, deployment: Deployment
    ) -> None:
        """No key, a key for another app, over the rate limit, an app nobody has."""
        body = {"sdkappid": V1_APP, "userid": "u"}
        r = await client.post("/v1/usersig", json=body)
        await self._check(r, errors.Unauthenticated, "POST", "/v1/usersig")
        r = await client.post("/v1/usersig", json=body, headers=deployment.headers(LIMITED_KEY))
        await self._check(r, errors.Forbidden, "POST", "/v1/usersig")

        client.app[STATE].limiter = RateLimiter(rate=0.01, burst=1)
        query = {"sdkappid": str(V2_APP), "userid": "u"}
        for _ in range(2):  # the first takes the one token of the bucket
            r = await client.get("/v1/usersig", params=query, headers=deployment.headers())
        await self._check(r, errors.RateLimited, "GET", "/v1/usersig")

        wildcard = write_config(
            deployment.directory,
            name="wildcard.toml",
            extra_callers=[{"name": "everything", "api_key": WILDCARD_KEY}],
        )
        everything = await make_client(wildcard)
        r = await everything.delete("/v1/usersig/12345/u", headers=deployment.headers(WILDCARD_KEY))
        await self._check(r, errors.UnknownSdkAppId, "DELETE", DELETE_PATH)
        assert (await r.json())["error"]["message"] == "no app with sdkappid 12345"

    async def test_the_body(self, client: TestClient, deployment: Deployment) -> None:
        """Not JSON, not application/json, in an unknown coding, over the cap."""
        headers = {**deployment.headers(), "Content-Type": "application/json"}
        for data in (b"{", b"[]", b'{"a": 1, "a": 2}'):
            r = await client.post("/v1/usersig", data=data, headers=headers)
            await self._check(r, errors.MalformedJson, "POST", "/v1/usersig")
        r = await client.post(
            "/v1/usersig", data=b"{}", headers={**headers, "Content-Type": "text/plain"}
        )
        await self._check(r, errors.UnsupportedMediaType, "POST", "/v1/usersig")
        r = await client.post(
            "/v1/verify", data=b"{}", headers={**headers, "Content-Encoding": "compress"}
        )
        await self._check(r, errors.UnsupportedContentEncoding, "POST", "/v1/verify")
        bomb = gzip.compress(b'{"userid": "' + b"x" * 200_000 + b'"}')
        r = await client.post(
            "/v1/usersig", data=bomb, headers={**headers, "Content-Encoding": "gzip"}
        )
        await self._check(r, errors.BodyTooLarge, "POST", "/v1/usersig")

    async def test_the_fields(self, client: TestClient, deployment: Deployment) -> None:
        """A missing field, an expire out of the app's range, a userid the policy
        refuses, a path that is not a number."""
        headers = deployment.headers()
        r = await client.post("/v1/usersig/batch", json={"sdkappid": V1_APP}, headers=headers)
        await self._check(r, errors.InvalidField, "POST", "/v1/usersig/batch")
        r = await client.post(
            "/v1/privatemapkey",
            json={"sdkappid": V1_APP, "userid": "u", "room_id": 1, "expire": 1},
            headers=headers,
        )
        await self._check(r, errors.InvalidExpire, "POST", "/v1/privatemapkey")
        r = await client.post(
            "/v1/usersig", json={"sdkappid": V1_APP, "userid": "a\u2028b"}, headers=headers
        )
        await self._check(r, errors.UserIdPolicyViolation, "POST", "/v1/usersig")
        r = await client.delete("/v1/usersig/0x10/u", headers=headers)
        await self._check(r, errors.InvalidField, "DELETE", DELETE_PATH)

    async def test_the_route(self, client: TestClient) -> None:
        """A path no route has, a method the path has no route for."""
        await self._check(await client.get("/v2/nothing"), errors.NotFound, "GET", None)
        r = await client.delete("/healthz")
        await self._check(r, errors.MethodNotAllowed, "DELETE", None)
        assert r.headers["Allow"] == "GET,HEAD"


class TestAccessLine:
    async def test_the_outcome_is_the_error_code_or_ok(
        self, client: TestClient, deployment: Deployment
    ) -> None:
        """Each request's access line says ``ok`` or the code it was refused with, so the
        log tells a 403 from a 401 without the response."""
        body = {"sdkappid": V1_APP, "userid": "u"}
        with capture_logs() as logs:
            await client.post("/v1/usersig", json=body, headers=deployment.headers())
            await client.post("/v1/usersig", json=body, headers=deployment.headers(LIMITED_KEY))
            await client.post("/v1/usersig", json=body)
            await client.get("/nowhere")
        lines = [line for line in logs if line["event"] == "request"]
        assert [(line["status"], line["outcome"]) for line in lines] == [
            (200, "ok"),
            (403, "forbidden"),
            (401, "unauthenticated"),
            (404, "not_found"),
        ]

"""``/openapi.json`` is a valid OpenAPI 3.1 document derived from the pydantic types that
validate requests, and ``/docs`` renders it in a real headless Chromium from bundled assets.

The server is the real application in dev mode (fresh keys, auth off, one signing worker),
listening on a loopback port; Chromium is only allowed to resolve that address, so any
asset fetched from a CDN would fail to load and the page would not render.
"""

from __future__ import annotations

import asyncio
import copy
import html
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode
from referencing.exceptions import Unresolvable

from signer.cache import MemoryCache
from signer.config import build_runtime, load_settings
from signer.config.loader import DEV_V1_APP, DEV_V2_APP
from signer.service import openapi
from signer.service.app import create_app
from signer.service.openapi import openapi_path
from signer.service.routes import ROUTES, Route
from signer.service.schemas import ErrorResponse
from signer.service.state import ServiceState

REF = "#/components/schemas/{model}"
ERROR_REF = {"$ref": REF.format(model=ErrorResponse.__name__)}
# Chromium runs as root in CI containers, where its sandbox cannot start (--no-sandbox);
# the rest keep it quiet and quick. Chromium still makes a few requests of its own (update
# and sign-in checks); --host-resolver-rules in _dump_dom makes those, and anything the
# page might fetch from elsewhere, fail to resolve.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--virtual-time-budget=10000",
)
# Not a loopback name: Swagger UI shows an online-validator badge (an <img> from
# validator.swagger.io) only when the spec's URL is not localhost/127.0.0.1.
DOCS_HOST = "signer.test"
CHROMIUM_TIMEOUT = 60


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _spec() -> dict[str, Any]:
    return openapi.build_spec(ROUTES)


def _route_id(route: Route) -> str:
    return f"{route.method} {route.path}"


def _schema(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    """``model``'s own JSON schema, with references written the way the spec writes them."""
    schema = model.model_json_schema(mode=mode, ref_template=REF)
    schema.pop("$defs", None)
    return schema


def _defs(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    defs: dict[str, Any] = model.model_json_schema(mode=mode, ref_template=REF).get("$defs", {})
    return defs


def _validator(spec: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    return OAS31Validator({**schema, "components": spec["components"]})


def _assert_matches(spec: dict[str, Any], schema: dict[str, Any], data: Any) -> None:
    errors = [error.message for error in _validator(spec, schema).iter_errors(data)]
    assert not errors, f"{data!r} does not match {schema}: {errors}"


# --- the spec itself -------------------------------------------------------------------


def test_spec_is_valid_openapi_31() -> None:
    spec = _spec()
    assert spec["openapi"].startswith("3.1.")
    validate(spec, cls=OpenAPIV31SpecValidator)


def _break_parameter(spec: dict[str, Any]) -> None:
    spec["paths"]["/v1/usersig"]["get"]["parameters"][0]["in"] = "body"  # 2.0 only


def _break_response(spec: dict[str, Any]) -> None:
    spec["paths"]["/healthz"]["get"]["responses"]["200"].pop("description")


def _break_ref(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"].pop("TokenResponse")


def _break_info(spec: dict[str, Any]) -> None:
    spec["info"].pop("title")


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        pytest.param(_break_parameter, OpenAPIValidationError, id="parameter-in-body"),
        pytest.param(_break_response, OpenAPIValidationError, id="response-no-description"),
        pytest.param(_break_info, OpenAPIValidationError, id="info-no-title"),
        pytest.param(_break_ref, Unresolvable, id="dangling-ref"),
    ],
)
def test_the_validator_catches_a_broken_spec(
    breakage: Callable[[dict[str, Any]], None], error: type[Exception]
) -> None:
    """A control: the validator is not vacuous on this spec."""
    spec = copy.deepcopy(_spec())
    breakage(spec)
    with pytest.raises(error):
        validate(spec, cls=OpenAPIV31SpecValidator)


def test_operations_are_exactly_the_route_table() -> None:
    spec = _spec()
    in_spec = {(method.upper(), path) for path, ops in spec["paths"].items() for method in ops}
    assert in_spec == {(route.method, openapi_path(route.path)) for route in ROUTES}
    operation_ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_route_appears_with_its_method(route: Route) -> None:
    spec = _spec()
    assert openapi_path(route.path) in spec["paths"]
    operation = spec["paths"][openapi_path(route.path)][route.method.lower()]
    assert operation["summary"] == route.summary
    assert operation["tags"] == [route.tag]
    if route.authenticated:
        assert operation["security"] == [{"bearer": []}]
        assert "bearer" in spec["components"]["securitySchemes"]
    else:
        assert "security" not in operation
    assert "200" in operation["responses"]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.body is not None], ids=_route_id)
def test_request_body_is_the_models_json_schema(route: Route) -> None:
    assert route.body is not None
    spec = _spec()
    body = spec["paths"][openapi_path(route.path)][route.method.lower()]["requestBody"]
    assert body["required"] is True
    assert list(body["content"]) == ["application/json"]
    schema = body["content"]["application/json"]["schema"]
    assert schema == {"$ref": REF.format(model=route.body.__name__)}
    components = spec["components"]["schemas"]
    assert components[route.body.__name__] == _schema(route.body, "validation")
    for name, nested in _defs(route.body, "validation").items():
        assert components[name] == nested


@pytest.mark.parametrize("route", [r for r in ROUTES if r.body is None], ids=_route_id)
def test_routes_without_a_body_declare_none(route: Route) -> None:
    operation = _spec()["paths"][openapi_path(route.path)][route.method.lower()]
    assert "requestBody" not in operation


@pytest.mark.parametrize("route", [r for r in ROUTES if r.query is not None], ids=_route_id)
def test_query_parameters_are_the_models_fields(route: Route) -> None:
    assert route.query is not None
    operation = _spec()["paths"][openapi_path(route.path)][route.method.lower()]
    model = route.query.model_json_schema()
    assert "$defs" not in model  # parameters inline their schema; a $ref would dangle
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert list(parameters) == list(model["properties"])
    for name, parameter in parameters.items():
        assert parameter["in"] == "query"
        assert parameter["required"] == (name in model.get("required", []))
        assert parameter["schema"] == model["properties"][name]


@pytest.mark.parametrize("route", [r for r in ROUTES if r.response is not None], ids=_route_id)
def test_ok_response_is_the_models_json_schema(route: Route) -> None:
    assert route.response is not None
    spec = _spec()
    ok = spec["paths"][openapi_path(route.path)][route.method.lower()]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": REF.format(model=route.response.__name__)
    }
    components = spec["components"]["schemas"]
    assert components[route.response.__name__] == _schema(route.response, "serialization")
    for name, nested in _defs(route.response, "serialization").items():
        assert components[name] == nested


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_each_listed_error_is_an_error_response(route: Route) -> None:
    spec = _spec()
    responses = spec["paths"][openapi_path(route.path)][route.method.lower()]["responses"]
    assert set(responses) == {"200", "500", *(str(status) for status in route.errors)}
    for status in (*route.errors, 500):
        response = responses[str(status)]
        assert response["description"]
        assert response["content"] == {"application/json": {"schema": ERROR_REF}}
    components = spec["components"]["schemas"]
    assert components["ErrorResponse"] == _schema(ErrorResponse, "serialization")
    for name, nested in _defs(ErrorResponse, "serialization").items():
        assert components[name] == nested


# --- the running service ---------------------------------------------------------------


@pytest.fixture
async def base_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AsyncIterator[str]:
    """The real app in dev mode, served on a loopback port for the duration of a test."""
    monkeypatch.setenv("SIGNER_ENGINE__WORKERS", "1")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # dev mode writes its keys here
    runtime = build_runtime(load_settings(None))
    state = ServiceState.create(runtime, MemoryCache())
    runner = web.AppRunner(create_app(state))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_served_spec_is_the_built_spec(base_url: str) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{base_url}/openapi.json") as r:
        assert r.status == 200
        assert r.content_type == "application/json"
        served = await r.json()
    assert served == _spec()
    validate(served, cls=OpenAPIV31SpecValidator)


VALID_BODIES: dict[str, dict[str, Any]] = {
    "/v1/usersig": {"sdkappid": DEV_V1_APP, "userid": "alice", "userbuf": "AAEC"},
    "/v1/usersig/batch": {"sdkappid": DEV_V2_APP, "userids": ["alice", "bob"]},
    "/v1/usersig/warm": {"sdkappid": DEV_V2_APP, "userids": ["alice", "bob"]},
    "/v1/privatemapkey": {"sdkappid": DEV_V1_APP, "userid": "alice", "room_id": 1234},
    "/v1/verify": {"sdkappid": DEV_V2_APP, "userid": "alice", "usersig": "not-a-usersig"},
}


async def test_spec_and_service_agree_on_requests_and_responses(base_url: str) -> None:
    """Bodies the spec accepts the service accepts, and answers as the spec says; bodies
    the spec rejects (unknown field, out of range) the service rejects with ErrorResponse."""
    spec = _spec()
    body_routes = [route for route in ROUTES if route.body is not None]
    assert {route.path for route in body_routes} == set(VALID_BODIES)
    async with aiohttp.ClientSession() as session:
        for route in body_routes:
            operation = spec["paths"][openapi_path(route.path)][route.method.lower()]
            request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
            good = VALID_BODIES[route.path]
            bad_bodies = [{**good, "unexpected": 1}, {**good, "sdkappid": 0}]
            _assert_matches(spec, request_schema, good)
            async with session.request(route.method, base_url + route.path, json=good) as r:
                assert r.status == 200, (route.path, await r.text())
                answer = await r.json()
            ok_schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            _assert_matches(spec, ok_schema, answer)
            for bad in bad_bodies:
                assert list(_validator(spec, request_schema).iter_errors(bad)), bad
                async with session.request(route.method, base_url + route.path, json=bad) as r:
                    assert r.status == 422, (route.path, bad, await r.text())
                    _assert_matches(spec, ERROR_REF, await r.json())

        query = {"sdkappid": str(DEV_V1_APP), "userid": "alice"}
        async with session.get(f"{base_url}/v1/usersig", params=query) as r:
            assert r.status == 200, await r.text()
            _assert_matches(spec, {"$ref": REF.format(model="TokenResponse")}, await r.json())
        for path in ("/healthz", "/readyz"):
            async with session.get(base_url + path) as r:
                assert r.status == 200
                _assert_matches(spec, {"$ref": REF.format(model="Health")}, await r.json())


class _Collector(HTMLParser):
    """The URLs a page references, and the operations Swagger UI rendered."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.urls: list[str] = []
        self.operations: list[dict[str, str]] = []
        self.version_stamps: list[str] = []
        self.error_blocks = 0
        self._capture: tuple[str, str] | None = None  # (key, closing tag)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.urls += [attributes[a] for a in ("src", "href", "action") if a in attributes]
        classes = set(attributes.get("class", "").split())
        if "errors-wrapper" in classes:
            self.error_blocks += 1
        if "opblock" in classes:
            methods = [c.removeprefix("opblock-") for c in classes if c.startswith("opblock-")]
            self.operations.append({"method": " ".join(methods)})
        elif "opblock-summary-path" in classes and self.operations:
            self.operations[-1]["path"] = attributes.get("data-path", "")
        elif "opblock-summary-description" in classes and self.operations:
            self._capture = ("summary", tag)
            self.operations[-1]["summary"] = ""
        elif tag == "pre" and "version" in classes:
            self._capture = ("version", tag)
            self.version_stamps.append("")

    def handle_endtag(self, tag: str) -> None:
        if self._capture and tag == self._capture[1]:
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._capture is None:
            return
        if self._capture[0] == "summary":
            self.operations[-1]["summary"] += data
        else:
            self.version_stamps[-1] += data


def _collect(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    collector.close()
    return collector


def _is_relative(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc


async def test_docs_page_uses_only_bundled_assets(base_url: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base_url}/docs") as r:
            assert r.status == 200
            assert r.content_type == "text/html"
            page = await r.text()
        assert page == openapi.DOCS_PAGE
        assert "http:" not in page and "https:" not in page and "//" not in page
        urls = _collect(page).urls
        assert urls, "the docs page references no assets"
        assert all(_is_relative(url) for url in urls), urls
        for url in urls:
            async with session.get(base_url + url) as r:
                assert r.status == 200, url
                served = await r.read()
            assert served == (openapi.STATIC / Path(url).name).read_bytes()
        async with session.get(f"{base_url}/docs/static/LICENSE") as r:
            assert r.status == 200  # Swagger UI's Apache-2.0 licence ships with it


def _chromium() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        message = "chromium is not installed (apt-get install chromium; .ci/run does this)"
        if _in_ci():
            pytest.fail(message)
        pytest.skip(message)
    return binary


async def _dump_dom(binary: str, url: str, profile: Path) -> str:
    port = urlsplit(url).port
    # Only the test's server resolves; anything else (a CDN, a validator badge) fails.
    rules = f"MAP {DOCS_HOST} 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
    process = await asyncio.create_subprocess_exec(
        binary,
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        f"--host-resolver-rules={rules}",
        "--dump-dom",
        f"http://{DOCS_HOST}:{port}/docs",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), CHROMIUM_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"chromium did not finish within {CHROMIUM_TIMEOUT}s")
    assert process.returncode == 0, stderr.decode(errors="replace")[-4000:]
    return stdout.decode()


@pytest.mark.slow
async def test_docs_render_every_operation_in_headless_chromium(
    base_url: str, tmp_path: Path
) -> None:
    binary = _chromium()
    dom = await _dump_dom(binary, base_url, tmp_path / "chromium-profile")
    page = _collect(dom)
    assert page.error_blocks == 0, "Swagger UI reported errors loading the spec"
    assert "OAS 3.1" in [stamp.strip() for stamp in page.version_stamps], page.version_stamps
    rendered = sorted(
        (op.get("method", ""), op.get("path", ""), html.unescape(op.get("summary", "")).strip())
        for op in page.operations
    )
    expected = sorted((r.method.lower(), openapi_path(r.path), r.summary) for r in ROUTES)
    assert rendered == expected
    external = [url for url in page.urls if not _is_relative(url)]
    assert not external, f"the rendered docs reference outside URLs: {external}"

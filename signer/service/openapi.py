"""``/openapi.json`` built from the route table and its pydantic models, and ``/docs``
(Swagger UI, served from files bundled in this package: no CDN)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from signer import __version__
from signer.service.errors import STATUS_TEXT, InternalError, status_of
from signer.service.routes import Route
from signer.service.schemas import ErrorResponse

STATIC = Path(__file__).parent / "static" / "swagger-ui"
_REF = "#/components/schemas/{model}"


def build_spec(routes: tuple[Route, ...]) -> dict[str, Any]:
    models: set[type[BaseModel]] = {ErrorResponse}
    for route in routes:
        models.update(m for m in (route.body, route.response) if m is not None)
    ordered = sorted(models, key=lambda m: m.__name__)
    refs, schema = models_json_schema(
        [
            (model, "validation" if _is_input(model, routes) else "serialization")
            for model in ordered
        ],
        ref_template=_REF,
    )
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(
            route, refs
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "signer",
            "version": __version__,
            "description": "Issues, caches and verifies Tencent Cloud IM / TRTC UserSig tokens.",
        },
        "paths": paths,
        "components": {
            "schemas": schema.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_PATH_PARAMETER = re.compile(r"\{(\w+)(?::[^}]*)?\}")


def openapi_path(path: str) -> str:
    """aiohttp's ``{name:regex}`` placeholders as OpenAPI's ``{name}``."""
    return _PATH_PARAMETER.sub(r"{\1}", path)


def _is_input(model: type, routes: tuple[Route, ...]) -> bool:
    return any(model is route.body for route in routes)


def _operation(route: Route, refs: dict[Any, Any]) -> dict[str, Any]:
    def ref(model: type, mode: str) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": f"{route.method.lower()}_"
        + re.sub(r"[^a-z0-9]+", "_", openapi_path(route.path).lower()).strip("_"),
        "tags": [route.tag],
        "responses": {},
    }
    if route.authenticated:
        operation["security"] = [{"bearer": []}]
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(route.body, "validation")}},
        }
    parameters = _path_parameters(route)
    if route.query is not None:
        query_schema = route.query.model_json_schema()
        parameters += [
            {
                "name": name,
                "in": "query",
                "required": name in query_schema.get("required", []),
                "schema": prop,
            }
            for name, prop in query_schema["properties"].items()
        ]
    if parameters:
        operation["parameters"] = parameters
    ok: dict[str, Any] = {"description": "OK"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": ref(route.response, "serialization")}}
    operation["responses"]["200"] = ok
    if route.path == "/metrics":
        ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
    for status in (*route.errors, status_of(InternalError)):
        operation["responses"][str(status)] = {
            "description": STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": ref(ErrorResponse, "serialization")}},
        }
    return operation


def _path_parameters(route: Route) -> list[dict[str, Any]]:
    """Each ``{placeholder}`` with the schema of its field in ``route.path_parameters``: a
    bare string would let clients (and schemathesis) send what the handler refuses."""
    names = _PATH_PARAMETER.findall(route.path)
    model = route.path_parameters
    properties = {} if model is None else model.model_json_schema()["properties"]
    missing = [name for name in names if name not in properties]
    if missing:
        raise ValueError(f"{route.method} {route.path}: no schema for path parameters {missing}")
    return [
        {"name": name, "in": "path", "required": True, "schema": properties[name]} for name in names
    ]


DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>signer API</title>
  <link rel="stylesheet" href="/docs/static/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/static/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


async def docs(request: web.Request) -> web.Response:
    return web.Response(text=DOCS_PAGE, content_type="text/html")


_ASSETS = {path.name: path for path in STATIC.iterdir() if path.is_file()}


async def asset(request: web.Request) -> web.StreamResponse:
    """A bundled Swagger UI file; only the files shipped in the package are served."""
    path = _ASSETS.get(request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound()
    return web.FileResponse(path)

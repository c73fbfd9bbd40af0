"""The aiohttp application: routes, middleware, static docs and the engine's lifecycle."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from signer.service import openapi
from signer.service.handlers import STATE, json_response
from signer.service.middleware import edge
from signer.service.routes import ROUTES
from signer.service.state import ServiceState


def create_app(state: ServiceState) -> web.Application:
    """The application for ``state``; starting it starts the engine, cleanup closes it."""
    app = web.Application(
        middlewares=[edge], client_max_size=state.runtime.settings.server.max_body_bytes
    )
    app[STATE] = state
    for route in ROUTES:
        if route.method == "GET":  # GET routes answer HEAD too (load balancer probes)
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    spec = openapi.build_spec(ROUTES)

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(spec)

    app.router.add_get("/openapi.json", openapi_json)
    app.router.add_get("/docs", openapi.docs)
    app.router.add_static("/docs/static", openapi.STATIC)
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.engine.start()
    yield
    await state.engine.close()
    await state.cache.close()

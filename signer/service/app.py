"""The aiohttp application: routes wrapped in the edge, docs and the engine's lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import web

from signer.cache import CacheBackend
from signer.service import openapi
from signer.service.edge import Handler, guarded, method_not_allowed, not_found
from signer.service.handlers import json_response
from signer.service.keys import STATE
from signer.service.logs import get_logger
from signer.service.routes import ROUTES
from signer.service.state import ServiceState

log = get_logger("signer.server")
CACHE_DOWN = "cache unreachable: serving by signing locally until it returns"


def create_app(state: ServiceState) -> web.Application:
    """The application for ``state``; starting it starts the engine, cleanup closes it.

    Every handler, including the 404 and 405 answers, is wrapped in the edge (request id,
    auth, errors as JSON, metrics), so no request leaves without them."""
    app = web.Application(client_max_size=state.runtime.settings.server.max_body_bytes)
    app[STATE] = state
    spec = openapi.build_spec(ROUTES)

    async def openapi_json(request: web.Request) -> web.Response:
        return json_response(spec)

    table = [(r.method, r.path, r.handler, r.authenticated) for r in ROUTES]
    table += [
        ("GET", "/openapi.json", openapi_json, False),
        ("GET", "/docs", openapi.docs, False),
        ("GET", "/docs/static/{name}", openapi.asset, False),
    ]
    by_path: dict[str, list[tuple[str, Handler, bool]]] = {}
    for method, path, handler, authenticated in table:
        by_path.setdefault(path, []).append((method, handler, authenticated))
    for path, methods in by_path.items():
        allowed = []
        for method, handler, authenticated in methods:
            wrapped = guarded(handler, path, authenticated)
            if method == "GET":  # GET routes answer HEAD too (load balancer probes)
                app.router.add_get(path, wrapped)
                allowed += ["GET", "HEAD"]
            else:
                app.router.add_route(method, path, wrapped)
                allowed.append(method)
        app.router.add_route("*", path, guarded(method_not_allowed(allowed), path, False))
    app.router.add_route("*", "/{tail:.*}", guarded(not_found, "unmatched", False))
    app.cleanup_ctx.append(_engine_lifecycle)
    return app


async def _engine_lifecycle(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE]
    await state.engine.start()
    await _check_cache(state.cache)
    if state.keep_warm is not None:
        state.keep_warm.start()
    publisher = None
    if state.metrics.shared is not None:  # one of several processes: share the metrics
        publisher = asyncio.ensure_future(_publish_metrics(state))
    yield
    if publisher is not None:
        publisher.cancel()
    if state.keep_warm is not None:
        await state.keep_warm.close()
    await state.engine.close()
    await state.cache.close()
    if state.metrics.shared is not None:
        state.metrics.publish()  # the final counts outlive the process


async def _check_cache(cache: CacheBackend) -> None:
    """Probe the cache before the first request, so /readyz and ``signer_cache_up`` are
    true from the start, and log its result and every later change, once each. A cache
    that does not answer never stops the service: requests are signed locally meanwhile."""
    up = await cache.probe()
    if cache.process_local:
        return  # an in-process store has nothing to reach and never goes down
    if up:
        log.info("cache reachable", backend=cache.name)
    else:
        log.warning(CACHE_DOWN, backend=cache.name)
    cache.on_health_change(lambda up: _log_cache_change(cache.name, up))


def _log_cache_change(backend: str, up: bool) -> None:
    if up:
        log.info("cache reachable again", backend=backend)
    else:
        log.warning(CACHE_DOWN, backend=backend)


METRICS_INTERVAL = 1.0


async def _publish_metrics(state: ServiceState) -> None:
    """A sibling's /metrics sees this process's counts at most a second late."""
    while True:
        state.metrics.publish()
        await asyncio.sleep(METRICS_INTERVAL)

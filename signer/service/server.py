"""Running one service process: uvloop, start-up announcements, SIGHUP reload, SIGTERM
drain, the collector's tuning and the connection cap.

Whether ``signer serve`` runs one process or a supervisor of several is decided in
:mod:`~signer.service.main`; the supervisor runs each of its children with
:func:`run_process`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import resource
import signal
import socket
from pathlib import Path

import uvloop
from aiohttp import web

from signer.cache.factory import describe, make_cache
from signer.config import ConfigError, Runtime, Settings, build_runtime, load_settings
from signer.config.loader import cli_command
from signer.service.app import create_app
from signer.service.logs import configure, get_logger
from signer.service.protocol import ConnectionGuard, GuardedRunner
from signer.service.state import ServiceState, restart_only_changes

log = get_logger("signer.server")


def announce(runtime: Runtime) -> None:
    settings = runtime.settings
    apps = [
        f"{app.sdkappid} ({app.settings.algorithm}, key {app.key_version})"
        for app in runtime.apps.values()
    ]
    if settings.dev_mode:
        log.warning(
            "DEV MODE: no configuration given, so signer made up its own. NOT FOR PRODUCTION",
            keys_dir=str(settings.config_dir),
            apps=apps,
            auth="DISABLED: any caller may mint tokens",
            cache=describe(settings.cache),
            hint=f"verify tokens with: {cli_command()} verify --public-key "
            f"{settings.config_dir}/public_key ...",
        )
    else:
        log.info(
            "configuration loaded",
            apps=apps,
            callers=[c.name for c in runtime.callers],
            auth="disabled" if settings.auth.disabled else "api keys",
        )
        if settings.auth.disabled:
            log.warning("auth is DISABLED by [auth] disabled = true: any caller may mint tokens")
        log.info("cache", backend=describe(settings.cache))
    if renamed := settings.deprecated_names():
        log.warning(
            "settings under names of an earlier release: they still work in this one, "
            "rename them (every duration is now in seconds)",
            settings=renamed,
        )


async def serve(
    settings: Settings,
    config_path: Path | None,
    overrides: dict[str, object] | None = None,
    sock: socket.socket | None = None,
    shared_metrics: Path | None = None,
) -> None:
    """Run one service process until SIGTERM. ``overrides`` are the command line's
    (``--host``, ``--port``), applied again on every reload. ``sock`` and
    ``shared_metrics`` are given to the children of a supervisor (several processes on one
    port).

    SIGHUP is held back (blocked) until its handler is in place, so a reload asked for
    during start-up happens once the service is up rather than killing it or going lost."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})
    runtime = build_runtime(settings)
    announce(runtime)
    if sock is None:  # alone: the supervisor says how many it runs, once
        log.info("one HTTP process", chosen=settings.processes_chosen())
    cache = settings.cache
    if sock is not None and not cache.url and cache.max_entries:
        # One in-memory cache per process could not honour a DELETE (logout, ban) made
        # on another: without a shared cache, nothing is cached.
        log.warning("several processes and no [cache] url: tokens are not cached")
        cache = cache.model_copy(update={"max_entries": 0})
    state = ServiceState.create(runtime, make_cache(cache), shared_metrics)
    app = create_app(state)
    server = settings.server
    guard = ConnectionGuard(server.header_timeout, _connection_cap(server.max_connections))
    state.metrics.watch_connections(guard)
    runner = GuardedRunner(
        app,
        guard,
        shutdown_timeout=server.shutdown_timeout,
        access_log=None,
        keepalive_timeout=server.keepalive_timeout,
        max_line_size=MAX_REQUEST_LINE,
    )
    await runner.setup()  # starts the engine: its workers are up and hold the keys
    _tune_gc()
    site: web.BaseSite
    if sock is None:
        site = web.TCPSite(
            runner, server.host, server.port, reuse_address=True, backlog=server.backlog
        )
    else:  # aiohttp listens again on the socket: without the backlog it would be 128
        site = web.SockSite(runner, sock, backlog=server.backlog)
    await site.start()
    log.info(
        "listening",
        url=site.name,
        workers=len(state.engine.worker_pids()),
        docs="/docs",
        gc_threshold=list(gc.get_threshold()),
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(
        signal.SIGHUP,
        lambda: asyncio.ensure_future(_reload(state, guard, config_path, overrides or {})),
    )
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGHUP})  # a pending one runs now
    await stop.wait()
    log.info("stopping: draining in-flight requests", timeout_s=settings.server.shutdown_timeout)
    # Stops accepting, waits for handlers, then closes the engine. Asked to stop again
    # (a second Ctrl-C), it stops waiting and kills the workers. Under a supervisor a
    # second SIGTERM is normal (systemd signals the whole group, then the supervisor
    # passes its own on): there the supervisor decides, and kills on a second signal.
    draining = asyncio.ensure_future(runner.cleanup())
    if sock is None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, draining.cancel)
    try:
        await draining
    except asyncio.CancelledError:
        state.engine.kill()
        log.warning("asked again to stop: stopped without waiting for requests in flight")
        return
    log.info("stopped")


GC_GEN0_THRESHOLD = 100_000


def _tune_gc() -> None:
    """Collect less often, and never walk the start-up heap again.

    Every request allocates futures and dicts; with CPython's default threshold (700) the
    collector ran often enough, over a large heap, to put its stalls into the p99 of
    POST /v1/usersig (see docs/PERFORMANCE.md). Freezing moves everything alive after
    start-up into a generation the collector skips."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 1000)


async def _reload(
    state: ServiceState,
    guard: ConnectionGuard,
    config_path: Path | None,
    overrides: dict[str, object],
) -> None:
    if state.runtime.settings.dev_mode:
        log.warning("SIGHUP ignored: dev mode has no configuration to reload")
        return
    try:
        settings = load_settings(config_path, overrides)
        previous = state.runtime.settings
        runtime = await state.reload(settings)
    except ConfigError as exc:
        log.error(
            "reload rejected; the previous configuration keeps serving", problems=exc.problems
        )
        return
    except Exception as exc:  # a reload must never take the service down
        log.error("reload failed; the previous configuration keeps serving", error=repr(exc))
        return
    guard.header_timeout = settings.server.header_timeout
    guard.max_connections = _connection_cap(settings.server.max_connections)
    log.info(
        "configuration reloaded",
        apps=[f"{a.sdkappid} (key {a.key_version})" for a in runtime.apps.values()],
    )
    if pending := restart_only_changes(previous, settings):
        log.warning("changed settings that apply only after a restart", settings=pending)


def run_process(
    settings: Settings,
    config_path: Path | None,
    overrides: dict[str, object],
    sock: socket.socket | None = None,
    shared_metrics: Path | None = None,
) -> None:
    """Run one service process, alone or as a supervisor's child (``sock`` and
    ``shared_metrics`` given): its logging, then :func:`serve` on uvloop."""
    configure(settings.server.log_format, settings.server.log_level)
    uvloop.run(serve(settings, config_path, overrides, sock, shared_metrics))


# The longest userid the schema allows (1024 characters, four UTF-8 bytes each) is 12,288
# bytes percent-encoded in a GET or DELETE URL: it must reach the userid policy's 422 rather
# than stop at aiohttp's default 8190-byte request line. Header lines keep the default.
MAX_REQUEST_LINE = 16384

FILE_RESERVE = 256  # descriptors kept for Redis connections, worker pipes, key files


def _connection_cap(wanted: int) -> int:
    """``max_connections``, raising this process's open-file limit to make room for it
    (to the hard limit at most). Beyond the limit accept() would fail instead: connections
    pile up in the kernel's queue unanswered, where a refusal is the clear answer."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = wanted + FILE_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft != resource.RLIM_INFINITY and soft < needed:
        cap = max(1, soft - FILE_RESERVE)
        log.warning(
            "open-file limit too low for [server] max_connections; capping",
            max_connections=wanted,
            cap=cap,
            nofile_limit=soft,
        )
        return cap
    return wanted

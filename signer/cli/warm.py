"""``signer warm``: fill the shared cache with tokens ahead of a known event (a launch, a live
show), at a bounded rate, from the service's own configuration.

It signs with the configured app's key on this machine's cores and writes to the
configured Redis, as ``POST /v1/usersig/warm`` does inside the service, so the tokens are
the ones every instance then serves from cache (with keep-warm on for the app, the users
are kept warm after, as if they had asked). ``--rate`` bounds userids a second, so a
warm-up of a million users does not take Redis or the signers from live traffic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import click

from signer.cli.inputs import BadInput, chunks_of, generated_userids, userids_from_file
from signer.cli.progress import Progress
from signer.config import AppRuntime, ConfigError, Runtime, build_runtime, load_settings
from signer.core import UINT32_MAX
from signer.engine import Engine, EngineSettings
from signer.engine.cpus import usable_cpus

MAX_SHOWN_REFUSALS = 10


@click.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SIGNER_CONFIG",
    required=True,
    help="The service's TOML configuration (env: SIGNER_CONFIG): its app keys and Redis.",
)
@click.option("--sdkappid", type=click.IntRange(1, UINT32_MAX), required=True)
@click.option(
    "--userids-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="One userid per line; - for stdin.",
)
@click.option("--count", type=click.IntRange(1), help="Warm <prefix><n> for n in 0..count-1.")
@click.option("--prefix", default="user_", show_default=True)
@click.option(
    "--expire",
    type=click.IntRange(1, UINT32_MAX),
    help="Token lifetime in seconds [default: the app's default_expire].",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=1000.0,
    show_default=True,
    help="At most this many userids a second.",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 10_000),
    default=500,
    show_default=True,
    help="Userids per round (one cache read and one write), at most a second's --rate.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=usable_cpus,
    help="Signing processes [default: all cores].",
)
def warm(
    config_path: Path,
    sdkappid: int,
    userids_file: str | None,
    count: int | None,
    prefix: str,
    expire: int | None,
    rate: float,
    chunk: int,
    workers: int,
) -> None:
    """Sign tokens into the shared cache ahead of a known event, at a bounded rate.

    Ends with one line: how many were signed, already warm (a cached token with at least
    refresh_ahead left, or being signed elsewhere now) or refused (the app's userid policy;
    the first few are named).
    Exit status 1 if any was refused, 2 for bad input or an unreachable cache.
    """
    from signer.cache.factory import describe  # keeps the other commands' start-up light

    if (userids_file is None) == (count is None):
        raise click.UsageError("give exactly one of --userids-file and --count")
    try:
        runtime = build_runtime(load_settings(config_path))
    except ConfigError as exc:
        raise BadInput("configuration rejected: " + "; ".join(exc.problems)) from None
    settings = runtime.settings
    if not settings.cache.url:
        raise BadInput(
            f"{config_path} has no [cache] url: signer warm fills the shared cache, and an "
            "in-memory one would vanish with this command"
        )
    app = runtime.apps.get(sdkappid)
    if app is None:
        raise BadInput(f"sdkappid {sdkappid} is not an app of {config_path}")
    lifetime = app.settings.default_expire if expire is None else expire
    if not app.settings.min_expire <= lifetime <= app.settings.max_expire:
        raise BadInput(
            f"--expire must be between {app.settings.min_expire} and "
            f"{app.settings.max_expire} seconds for sdkappid {sdkappid}"
        )
    userids = (
        userids_from_file(userids_file) if userids_file else generated_userids(prefix, count or 0)
    )
    progress = Progress(count, unit="user")
    start = time.perf_counter()
    rounds = chunks_of(userids, min(chunk, max(1, int(rate))))  # a round: at most 1 s of rate
    try:
        signed, warm_already, refused = asyncio.run(
            _run(runtime, app, lifetime, rounds, rate, workers, progress)
        )
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    for userid, reason in refused[:MAX_SHOWN_REFUSALS]:
        click.echo(f"signer warm: refused userid {userid!r}: {reason}", err=True)
    done = signed + warm_already + len(refused)
    click.echo(
        f"signer warm: {signed} signed, {warm_already} already warm, {len(refused)} refused "
        f"in {seconds:.2f} s ({done / seconds if seconds else 0:,.0f} userids/s) "
        f"into {describe(settings.cache)}",
        err=True,
    )
    if refused:
        raise SystemExit(1)


async def _run(
    runtime: Runtime,
    app: AppRuntime,
    expire: int,
    chunks: Iterator[list[str]],
    rate: float,
    workers: int,
    progress: Progress,
) -> tuple[int, int, list[tuple[str, str]]]:
    """Warm chunk after chunk, never ahead of ``rate`` userids a second."""
    from signer.cache import TokenIssuer
    from signer.cache.factory import describe, make_cache
    from signer.cache.warming import warm_many
    from signer.service.state import app_policy

    settings = runtime.settings
    cache = make_cache(settings.cache)
    try:
        if not await cache.probe():
            raise BadInput(f"the cache at {describe(settings.cache)} does not answer")
        engine_settings = EngineSettings(workers=workers, max_queued=max(50_000, 20 * 10_000))
        async with Engine(runtime.keyset, engine_settings) as engine:
            issuer = TokenIssuer(engine, cache)
            policy = app_policy(settings, app)
            signed = already = done = 0
            refused: list[tuple[str, str]] = []
            began = time.monotonic()
            for part in chunks:
                counts = await warm_many(issuer, policy, part, expire, background=False)
                signed += counts.signed
                already += counts.already_warm
                refused += [(userid, error.message) for userid, error in counts.refused]
                done += len(part)
                progress.update(len(part))
                ahead = began + done / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            return signed, already, refused
    finally:
        await cache.close()  # waits for the last writes

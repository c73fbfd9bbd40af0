"""``signer bulk``: many valid tokens at once (load tests), on every core, streaming.

Userids are read lazily and sent to the engine in chunks; each worker signs a chunk and
renders its records, and the parent writes chunks in input order with a bounded number in
flight, so memory stays flat however many userids there are.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import IO

import click

from signer.cli import inputs
from signer.cli.options import app_options, signing_key_options
from signer.cli.progress import Progress
from signer.core import EcPrivateKey, HmacSecret
from signer.engine import AppKey, Engine, EngineSettings, KeySet
from signer.engine.cpus import usable_cpus
from signer.engine.records import CSV_HEADER, Format, Rendered

DEFAULT_CHUNK = 1000


async def _run(
    keyset: KeySet,
    sdkappid: int,
    chunks: Iterator[list[str]],
    expire: int,
    fmt: Format,
    out: IO[bytes],
    settings: EngineSettings,
    strict: bool,
    progress: Progress,
) -> tuple[int, int, str | None]:
    tokens = errors = 0
    window = settings.workers * settings.in_flight_per_worker
    async with Engine(keyset, settings) as engine:
        running: deque[asyncio.Task[Rendered]] = deque()
        try:
            for chunk in itertools.chain(chunks, [None]):
                if chunk is not None:
                    running.append(
                        asyncio.create_task(engine.sign_rendered(sdkappid, chunk, expire, fmt))
                    )
                while running and (len(running) >= window or chunk is None):
                    rendered = await running.popleft()
                    if strict and rendered.errors:
                        out.write(rendered.data[: rendered.clean_bytes])
                        return tokens + rendered.clean_records, 1, rendered.first_error
                    out.write(rendered.data)
                    tokens, errors = tokens + rendered.tokens, errors + rendered.errors
                    progress.update(rendered.tokens + rendered.errors)
        finally:
            for task in running:
                task.cancel()
    return tokens, errors, None


@click.command()
@app_options
@signing_key_options
@click.option(
    "--userids-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="One userid per line; - for stdin.",
)
@click.option("--count", type=click.IntRange(1), help="Generate <prefix><n> for n in 0..count-1.")
@click.option("--prefix", default="user_", show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True
)
@click.option(
    "--out",
    "out_path",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Output file, - for stdout.",
)
@click.option("--strict", is_flag=True, help="Stop at the first userid that breaks the policy.")
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=usable_cpus,
    help="Worker processes [default: all cores].",
)
@click.option(
    "--chunk",
    type=click.IntRange(1, 100_000),
    default=DEFAULT_CHUNK,
    show_default=True,
    help="Userids per worker task.",
)
def bulk(
    sdkappid: int,
    key_path: str | None,
    key_pem: str | None,
    secret_path: str | None,
    secret_value: str | None,
    userids_file: str | None,
    count: int | None,
    prefix: str,
    expire: int,
    fmt: Format,
    out_path: str,
    strict: bool,
    max_userid_bytes: int,
    workers: int,
    chunk: int,
) -> None:
    """Mint a token for every userid, using all cores; one record per userid, in order.

    Each record has userid, usersig, issued_at and expires_at; a userid that breaks the
    policy gets an error record instead (or, with --strict, stops the run). Exit status 1
    if any record is an error.
    """
    if (userids_file is None) == (count is None):
        raise click.UsageError("give exactly one of --userids-file and --count")
    key = inputs.signing_key(key_path, key_pem, secret_path, secret_value)
    if isinstance(key, EcPrivateKey):
        app = AppKey.from_private_key(sdkappid, key, max_userid_bytes=max_userid_bytes)
    else:
        assert isinstance(key, HmacSecret)
        app = AppKey.from_secret(sdkappid, key, max_userid_bytes=max_userid_bytes)
    userids = (
        inputs.userids_from_file(userids_file)
        if userids_file
        else inputs.generated_userids(prefix, count or 0)
    )
    settings = EngineSettings(workers=workers, max_queued=max(50_000, 4 * workers * chunk))
    progress = Progress(count)
    start = time.perf_counter()
    out = sys.stdout.buffer if out_path == "-" else _open_out(out_path)
    try:
        if fmt == "csv":
            out.write(CSV_HEADER)
        tokens, errors, stopped = asyncio.run(
            _run(
                KeySet.of([app]),
                sdkappid,
                inputs.chunks_of(userids, chunk),
                expire,
                fmt,
                out,
                settings,
                strict,
                progress,
            )
        )
        out.flush()
    finally:
        progress.close()
        if out is not sys.stdout.buffer:
            out.close()
    seconds = time.perf_counter() - start
    if stopped is not None:
        raise inputs.BadInput(f"--strict: stopped at userid {stopped} after {tokens} tokens")
    click.echo(
        f"signer bulk: {tokens} tokens, {errors} errors in {seconds:.2f} s "
        f"({tokens / seconds if seconds else 0:,.0f} tokens/s)",
        err=True,
    )
    if errors:
        sys.exit(1)


def _open_out(path: str) -> IO[bytes]:
    try:
        return open(path, "wb")
    except OSError as exc:
        raise inputs.BadInput(f"cannot write {path}: {exc.strerror}") from None

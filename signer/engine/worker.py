"""Code that runs inside the worker processes of the signing pool.

:mod:`signer.engine.pool` spawns each worker with its ``_serve`` loop as the target; the
loop calls :func:`initialize` with the shipped key set before it reads its first call, so
keys are loaded once per process. Each call after that (:func:`ready`, then
:func:`sign_batch` or :func:`sign_rendered`) is a whole batch or bulk chunk, so the cost of
one inter-process round trip is shared by many signatures (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

from signer.engine.keyset import KeySet
from signer.engine.records import Format, Rendered, render
from signer.engine.requests import Signers, SignRequest, WireResult, sign_one, to_wire

_signers: Signers = {}
_PR_SET_PDEATHSIG = 1


def initialize(keyset: KeySet) -> None:
    """Set this process up: die with the parent, and build the signers from the shipped key
    material. The pool's ``_serve`` calls it once, before the worker's first call
    (``bench/engine_batching.py`` also passes it to a ``ProcessPoolExecutor`` as the
    initializer of its per-item baseline)."""
    global _signers
    die_with_parent()
    _signers = keyset.build_signers()


def die_with_parent() -> None:
    """Ask Linux to SIGKILL this process if its parent dies, even by SIGKILL: a worker
    must never outlive the service that started it (and hold its keys in memory)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def sign_batch(requests: list[tuple[Any, ...]]) -> list[WireResult]:
    """Sign every request (a SignRequest's fields as a plain tuple); a bad item yields its
    error in place, the rest are unaffected."""
    make = SignRequest._make
    return [to_wire(sign_one(_signers, make(request))) for request in requests]


def sign_rendered(sdkappid: int, userids: list[str], expire: int, fmt: Format) -> Rendered:
    """Sign a token for each userid and return the records already rendered (bulk)."""
    return render(
        ((userid, sign_one(_signers, SignRequest(sdkappid, userid, expire))) for userid in userids),
        fmt,
    )


def ready() -> int:
    """A no-op call, the first the pool sends a new worker: its answer means the worker has
    started and loaded its keys."""
    return len(_signers)

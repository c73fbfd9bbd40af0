"""Code that runs inside the worker processes of the signing pool.

The pool initializer loads the key set once per process; each task is then a whole batch,
so one inter-process round trip (~110 µs) is shared by many signatures (~25 µs each).
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
    """Pool initializer: build this process's signers from the shipped key material."""
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
    """A no-op task used to wait until a worker has started and loaded its keys."""
    return len(_signers)

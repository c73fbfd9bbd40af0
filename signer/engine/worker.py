"""Code that runs inside the worker processes of the signing pool.

The pool initializer loads the key set once per process; each task is then a whole batch,
so one inter-process round trip (~110 µs) is shared by many signatures (~25 µs each).
"""

from __future__ import annotations

from signer.engine.keyset import KeySet
from signer.engine.records import Format, Rendered, render
from signer.engine.requests import Signers, SignRequest, WireResult, sign_one, to_wire

_signers: Signers = {}


def initialize(keyset: KeySet) -> None:
    """Pool initializer: build this process's signers from the shipped key material."""
    global _signers
    _signers = keyset.build_signers()


def sign_batch(requests: list[SignRequest]) -> list[WireResult]:
    """Sign every request; a bad item yields its error in place, the rest are unaffected."""
    return [to_wire(sign_one(_signers, request)) for request in requests]


def sign_rendered(sdkappid: int, userids: list[str], expire: int, fmt: Format) -> Rendered:
    """Sign a token for each userid and return the records already rendered (bulk)."""
    return render(
        ((userid, sign_one(_signers, SignRequest(sdkappid, userid, expire))) for userid in userids),
        fmt,
    )


def ready() -> int:
    """A no-op task used to wait until a worker has started and loaded its keys."""
    return len(_signers)

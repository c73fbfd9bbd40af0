"""API keys (``Authorization: Bearer <key>``) and per-caller rate limits.

Keys are kept only as SHA-256 digests and compared in constant time against every caller
(:meth:`signer.config.Runtime.authenticate`). The rate limit is a token bucket per caller:
``rate`` requests a second on average, ``burst`` at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from signer.config import Caller, Runtime
from signer.service.errors import Forbidden, RateLimited, Unauthenticated

ANONYMOUS = Caller("anonymous", b"", None)


def authenticate(runtime: Runtime, authorization: str | None) -> Caller:
    """The caller for an ``Authorization`` header; raises :class:`Unauthenticated` if
    there is none."""
    if runtime.settings.auth.disabled:
        return ANONYMOUS
    if not authorization:
        raise Unauthenticated("missing Authorization: Bearer <api key>")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthenticated("Authorization must be 'Bearer <api key>'")
    caller = runtime.authenticate(key.strip())
    if caller is None:
        raise Unauthenticated("unknown API key")
    return caller


def authorize(caller: Caller, sdkappid: int) -> None:
    if not caller.may_use(sdkappid):
        raise Forbidden(f"caller {caller.name!r} may not use sdkappid {sdkappid}", "sdkappid")


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class RateLimiter:
    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def check(self, caller: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from the caller's bucket or raise :class:`RateLimited`."""
        now = self.clock()
        bucket = self._buckets.get(caller)
        if bucket is None:
            bucket = self._buckets[caller] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return
        wait = math.ceil((cost - bucket.tokens) / self.rate)
        raise RateLimited(
            f"caller {caller!r} is over its rate limit of {self.rate:g} requests/s",
            retry_after=wait,
        )

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
from signer.service.errors import ApiError

ANONYMOUS = Caller("anonymous", b"", None)


def authenticate(runtime: Runtime, authorization: str | None) -> Caller:
    """The caller for an ``Authorization`` header; raises 401 ApiError if there is none."""
    if runtime.settings.auth.disabled:
        return ANONYMOUS
    challenge = {"WWW-Authenticate": 'Bearer realm="signer"'}
    if not authorization:
        raise ApiError(
            401, "unauthenticated", "missing Authorization: Bearer <api key>", headers=challenge
        )
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise ApiError(
            401, "unauthenticated", "Authorization must be 'Bearer <api key>'", headers=challenge
        )
    caller = runtime.authenticate(key.strip())
    if caller is None:
        raise ApiError(401, "unauthenticated", "unknown API key", headers=challenge)
    return caller


def authorize(caller: Caller, sdkappid: int) -> None:
    if not caller.may_use(sdkappid):
        raise ApiError(
            403, "forbidden", f"caller {caller.name!r} may not use sdkappid {sdkappid}", "sdkappid"
        )


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
        """Take ``cost`` tokens from the caller's bucket or raise 429 with Retry-After."""
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
        raise ApiError(
            429,
            "rate_limited",
            f"caller {caller!r} is over its rate limit of {self.rate:g} requests/s",
            headers={"Retry-After": str(max(1, wait))},
        )

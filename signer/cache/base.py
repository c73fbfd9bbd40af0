"""The cache interface: what the service needs of any token store, and the entry it keeps.

An entry carries the userid and sdkappid it was issued for, so a read can check them: a
cache or client bug (such as redis-py's CVE-2023-28858/28859, which could hand one request
another's reply) must never give one user another user's token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple, Protocol

from signer.core import IssuedToken


class CachedToken(NamedTuple):
    """A token as the cache keeps it (a tuple: a warm batch builds thousands of these)."""

    usersig: str
    userid: str
    sdkappid: int
    issued_at: int
    expires_at: int
    key_version: str

    @classmethod
    def of(cls, token: IssuedToken) -> CachedToken:
        return cls(
            token.usersig,
            token.userid,
            token.sdkappid,
            token.issued_at,
            token.expires_at,
            token.key_version,
        )


class CacheKey(NamedTuple):
    """Everything that changes the token: app, key version, lifetime, userbuf, userid."""

    sdkappid: int
    key_version: str
    expire: int
    userbuf_digest: str
    userid: str

    def text(self) -> str:
        # The userid goes last: it may contain ":", every field before it cannot.
        return (
            f"{self.sdkappid}:{self.key_version}:{self.expire}:{self.userbuf_digest}:{self.userid}"
        )


class WarmMark(NamedTuple):
    """What keep-warm (:mod:`signer.cache.keepwarm`) records of one token variant: when
    its re-sign is due (None: no new token, say a hit), when its user asked (None: a
    background re-sign, which is not the user asking), both in ms, and how long the app's
    keep-warm state outlives its last write (its ``keep_warm_days``, in ms).
    ``due_if_untracked``: set the due time only where the variant has none (a hit: a claim
    in flight has moved its score, which must not be undone)."""

    sdkappid: int
    userid: str
    expire: int
    due_ms: int | None
    seen_ms: int | None
    keep_ms: int
    due_if_untracked: bool = False


DEFAULT_MAX_LIFETIME = 10 * 365 * 86400
"""The default of an app's ``max_expire``: how long a revocation lasts when the caller of
``delete_user`` does not say."""


class RevocationNotRecorded(Exception):
    """A logout or ban the shared store could not take: instances may still serve the
    user's tokens. Nothing was changed there (or nothing is known to have been), so the
    caller must report failure and retry, after ``retry_after`` seconds."""

    def __init__(self, store: str, retry_after: float = 1.0) -> None:
        super().__init__(f"the {store} cache could not record the revocation")
        self.store = store
        self.retry_after = retry_after


class CacheBackend(Protocol):
    """A shared (or local) token store. Calls never raise for a store outage: a backend
    that cannot answer returns misses and drops writes, and says so in ``healthy``. The
    one exception is ``delete_user``, a security action: see there."""

    name: str
    process_local: bool
    """True when no other process sees this store: the issuer's single-flight table is
    then all the lease there is, and it skips the store's lease round trips."""

    async def get_many(self, keys: Sequence[CacheKey]) -> list[CachedToken | None]: ...

    async def set_many(
        self, items: Sequence[tuple[CacheKey, CachedToken, int]], wait: bool = False
    ) -> None:
        """Store each token for its TTL in seconds (> 0). Unless ``wait``, the write may
        still be under way when this returns (it is batched with others)."""

    async def acquire_lease(self, key: CacheKey, seconds: float) -> tuple[bool, CachedToken | None]:
        """Claim the right to sign ``key`` for ``seconds`` (False if another instance holds
        it), and read the entry in the same round trip: a token stored since our miss makes
        signing unnecessary. A store that cannot answer grants the lease."""

    async def read_or_lease(
        self, key: CacheKey, seconds: float
    ) -> tuple[CachedToken | None, bool | None]:
        """The entry under ``key``, and where there is none the lease, tried in the same
        round trip (a miss is signed next): ``True``/``False`` if it was tried, ``None`` if
        not (an entry was there, or the store has no leases). Like :meth:`acquire_lease`,
        a store that cannot answer grants it."""

    async def release_lease(
        self, key: CacheKey, store: tuple[CachedToken, int] | None = None
    ) -> None:
        """Let go of a lease won by :meth:`acquire_lease`; with ``store`` (a token and its
        TTL in seconds), store that token first, as one step: the instances waiting on the
        lease read exactly that write. Like :meth:`set_many` without ``wait``, the write
        may still be under way when this returns."""

    async def delete(self, keys: Sequence[CacheKey]) -> int: ...

    def track(self, marks: Sequence[WarmMark]) -> None:
        """Record keep-warm marks with this iteration's writes (best effort, not awaited;
        a store without keep-warm state ignores them)."""

    @property
    def lost_marks(self) -> int:
        """Keep-warm marks tracked but never written, so far (dropped while the store was
        away, refused by a full queue, or in a write that failed): a caller remembering
        which marks it made forgets them when this moves."""

    async def delete_user(
        self,
        sdkappid: int,
        userid: str,
        known: Sequence[CacheKey] = (),
        *,
        max_lifetime: int = DEFAULT_MAX_LIFETIME,
    ) -> int:
        """Retire every cached token of one user (logout, ban). ``known`` names variants
        the caller can compute (a store may need them to free memory at once); the
        result counts the entries removed that way. ``max_lifetime`` is the longest a
        token of the user's app may live (its ``max_expire``, seconds): what a store
        remembers of the revocation need live no longer (plus a small margin).

        Returning means the revocation is recorded where every instance reads: a shared
        store that cannot take it (down, paused, refusing writes) raises
        :class:`RevocationNotRecorded`, never returns 0, because a logout or ban reported
        done while the tokens are still served is worse than an error. Process-local
        copies (the memory cache, an L1) are dropped whatever the shared store says."""

    def healthy(self) -> bool:
        """Does the store answer, as far as is known now? Cheap: read on every /readyz
        and metrics scrape."""

    async def probe(self) -> bool:
        """Ask the store now, within a budget of its own, and update ``healthy`` with the
        answer; never raises. A shared store also starts checking itself in the
        background from then on, so ``healthy`` follows it on an idle instance."""

    def on_health_change(self, listener: Callable[[bool], None]) -> None:
        """Have ``listener(up)`` called once each time ``healthy`` changes."""

    async def close(self) -> None: ...

"""Signing tokens nobody is waiting for: keep-warm's re-signs of claimed variants, and
warming a list of users ahead of a known event (``POST /v1/usersig/warm``, ``signer
warm``). Both sign in the engine's background queue, which yields to live requests.

A re-sign must never bring back a token of a user logged out or banned meanwhile. The
user's DELETE takes them out of keep-warm's ``seen`` set and writes a revocation marker
(the time of the logout; a token issued at or before it is never served): a claim made
after the DELETE finds the user gone, or (a request's "seen" mark landing after the
DELETE) last seen before the marker, and claims nothing; a re-sign claimed before it
signs its token as issued ``BACKDATE`` seconds before its claim, so the marker retires
it whatever the order in which the signature, the DELETE and the store land. BACKDATE
covers the DELETE's own retries (about a second: the marker holds the time it was asked
for) and a few seconds of clock skew between instances.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from signer.cache.base import CachedToken, CacheKey, WarmMark
from signer.cache.issuer import AppPolicy, TokenIssuer
from signer.core import IssuedToken, SignerError
from signer.engine import SignRequest

BACKDATE = 5
"""Seconds a re-signed token's issued_at lies before its claim (module docstring)."""


@dataclass
class WarmCounts:
    """What a warm request did, per userid: signed now, already warm, or refused."""

    signed: int = 0
    already_warm: int = 0
    refused: list[tuple[str, SignerError]] = field(default_factory=list)


def _needs_resign(entry: CachedToken, app: AppPolicy, expire: int, now: float) -> bool:
    """Whether ``entry`` is inside its re-sign window (or past it): a token stored since
    the claim's due time was recorded has been renewed already."""
    return entry.expires_at - app.min_remaining - now <= app.warm_lead(expire)


async def _leases(
    issuer: TokenIssuer,
    app: AppPolicy,
    keys: Sequence[CacheKey],
    settled: Callable[[CacheKey, CachedToken], bool],
) -> list[CacheKey]:
    """The ``keys`` whose stampede lease this instance won, so no key is signed twice
    across instances (or by a live miss meanwhile). A key being signed elsewhere (its
    lease held by another instance, or a request of this process signing it), or whose
    entry read with the lease is a hit already ``settled`` (stored since the caller's
    read), is left out, and a lease won for it let go."""
    cache = issuer.cache
    mine = [key for key in keys if not issuer.signing(key)]
    leases = await asyncio.gather(*(cache.acquire_lease(key, app.lease_seconds) for key in mine))
    won: list[CacheKey] = []
    for key, (granted, entry) in zip(mine, leases, strict=True):
        stored = (
            entry is not None and issuer.verdict(entry, key, app) == "hit" and settled(key, entry)
        )
        if granted and not stored:
            won.append(key)
        elif granted:
            await cache.release_lease(key)
    return won


async def _sign_leased(
    issuer: TokenIssuer,
    app: AppPolicy,
    won: Sequence[CacheKey],
    issued_at: int | None,
    background: bool,
) -> list[tuple[CacheKey, IssuedToken | SignerError, CachedToken | None]]:
    """Sign the ``won`` keys in the engine (its ``background`` queue, or not) and let
    each lease go storing its token, as a live miss does: a request waiting on the
    lease reads exactly that write. Each key comes back with its outcome and the entry
    stored (None: an error, or a token that would be stale at once). An engine that
    refuses the whole call (full, closing) lets the leases go and raises."""
    requests = [SignRequest(app.sdkappid, k.userid, k.expire, None, issued_at) for k in won]
    try:
        outcomes = await issuer.engine.sign_many(requests, background) if requests else []
    except BaseException:
        for key in won:
            await issuer.cache.release_lease(key)
        raise
    results: list[tuple[CacheKey, IssuedToken | SignerError, CachedToken | None]] = []
    for key, outcome in zip(won, outcomes, strict=True):
        item = None if isinstance(outcome, SignerError) else issuer.entry(key, outcome, app)
        await issuer.cache.release_lease(key, None if item is None else item[1:])
        results.append((key, outcome, None if item is None else item[1]))
    return results


async def resign_due(
    issuer: TokenIssuer,
    app: AppPolicy,
    variants: Sequence[tuple[str, int]],
    claimed_at: float,
) -> Counter[str]:
    """Re-sign the claimed ``variants`` ((userid, expire) pairs) of ``app``, each under its
    stampede lease, so no variant is signed twice across instances; their new due times
    are recorded with the stored tokens. Counts ``resigned``, ``late`` (re-signed, but its
    cached token had already gone or fallen under min_remaining: a request meanwhile
    missed), ``skipped`` (renewed meanwhile, or being signed elsewhere) and ``failed``."""
    counts: Counter[str] = Counter()
    cache = issuer.cache
    keys = [issuer.key(app, userid, expire, None) for userid, expire in variants]
    entries = await cache.get_many(keys)
    now = issuer.clock()
    todo: list[CacheKey] = []
    late: set[CacheKey] = set()
    marks: list[WarmMark] = []
    for key, entry in zip(keys, entries, strict=True):
        usable = issuer.verdict(entry, key, app) == "hit"
        if usable and entry is not None and not _needs_resign(entry, app, key.expire, now):
            counts["skipped"] += 1  # renewed since: due again as of the token there
            marks += issuer.marks(app, key, entry, stored=True, asked=False)
        else:
            todo.append(key)
            if not usable:
                late.add(key)
    if marks:
        cache.track(marks)
    if not todo:
        return counts
    won = await _leases(
        issuer, app, todo, lambda key, entry: not _needs_resign(entry, app, key.expire, now)
    )
    counts["skipped"] += len(todo) - len(won)
    try:
        signed = await _sign_leased(issuer, app, won, int(claimed_at) - BACKDATE, True)
    except SignerError:  # the queue is full (Overloaded), the engine closing
        counts["failed"] += len(won)
        return counts
    stored: list[WarmMark] = []
    for key, _, entry in signed:
        if entry is None:
            counts["failed"] += 1
            continue
        counts["resigned"] += 1
        counts["late"] += key in late
        stored += issuer.marks(app, key, entry, stored=True, asked=False)
    cache.track(stored)
    return counts


async def warm_many(
    issuer: TokenIssuer,
    app: AppPolicy,
    userids: Sequence[str],
    expire: int,
    background: bool = True,
) -> WarmCounts:
    """Fill the cache with a token for each of ``userids`` (lifetime ``expire``) that has
    none with at least ``refresh_ahead`` seconds left, ahead of a known event. Signed in
    the engine's ``background`` queue (``signer warm`` has an engine of its own: no live
    request to yield to), each under its stampede lease, so a warm racing a live miss or
    another warm signs a userid once: one being signed elsewhere counts as already warm.
    Each userid counts as asking (keep-warm then tracks it). A userid repeated is
    counted once; one the app's policy refuses is ``refused``."""
    counts = WarmCounts()
    unique = list(dict.fromkeys(userids))
    keys = [issuer.key(app, userid, expire, None) for userid in unique]
    entries = await issuer.cache.get_many(keys)
    now = issuer.clock()

    def warm(key: CacheKey, entry: CachedToken | None) -> bool:
        return (
            entry is not None
            and issuer.verdict(entry, key, app) == "hit"
            and entry.expires_at - now >= app.refresh_ahead
        )

    todo: list[CacheKey] = []
    marks: list[WarmMark] = []
    for key, entry in zip(keys, entries, strict=True):
        if warm(key, entry):
            assert entry is not None
            counts.already_warm += 1
            marks += issuer.marks(app, key, entry, stored=False, asked=True)
        else:
            todo.append(key)
    if marks:
        issuer.cache.track(marks)
    won = await _leases(issuer, app, todo, warm) if todo else []
    counts.already_warm += len(todo) - len(won)
    stored: list[WarmMark] = []
    for key, outcome, entry in await _sign_leased(issuer, app, won, None, background):
        if isinstance(outcome, SignerError):
            counts.refused.append((key.userid, outcome))
            continue
        counts.signed += 1
        if entry is not None:
            stored += issuer.marks(app, key, entry, stored=True, asked=True)
    if stored:
        issuer.cache.track(stored)
    return counts

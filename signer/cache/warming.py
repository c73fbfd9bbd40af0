"""Signing tokens nobody is waiting for: keep-warm's re-signs of claimed variants, and
warming a list of users ahead of a known event (``POST /v1/usersig/warm``, ``signer
warm``). Both sign in the engine's background queue, which yields to live requests.

A re-sign must never bring back a token of a user logged out or banned meanwhile. The
user's DELETE takes them out of keep-warm's ``seen`` set and writes a revocation marker
(the time of the logout; a token issued at or before it is never served): a claim made
after the DELETE finds the user gone and claims nothing, and a re-sign claimed before it
signs its token as issued ``BACKDATE`` seconds before its claim, so the marker retires
it whatever the order in which the signature, the DELETE and the store land. BACKDATE
covers the DELETE's own retries (about a second: the marker holds the time it was asked
for) and a few seconds of clock skew between instances.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
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
    todo: list[tuple[CacheKey, bool]] = []
    marks: list[WarmMark] = []
    for key, entry in zip(keys, entries, strict=True):
        usable = issuer.verdict(entry, key, app) == "hit"
        if issuer.signing(key):
            counts["skipped"] += 1  # a request of this process signs it now
        elif usable and entry is not None and not _needs_resign(entry, app, key.expire, now):
            counts["skipped"] += 1  # renewed since: due again as of the token there
            marks += issuer.marks(app, key, entry, stored=True, asked=False)
        else:
            todo.append((key, not usable))
    if marks:
        cache.track(marks)
    if not todo:
        return counts
    leases = await asyncio.gather(*(cache.acquire_lease(key, app.lease_seconds) for key, _ in todo))
    won: list[tuple[CacheKey, bool]] = []
    for (key, late), (granted, entry) in zip(todo, leases, strict=True):
        renewed = entry is not None and issuer.verdict(entry, key, app) == "hit"
        if granted and renewed and entry is not None:
            renewed = not _needs_resign(entry, app, key.expire, now)
        if not granted or renewed:
            counts["skipped"] += 1
            if granted:
                await cache.release_lease(key)
            continue
        won.append((key, late))
    issued_at = int(claimed_at) - BACKDATE
    requests = [SignRequest(app.sdkappid, k.userid, k.expire, None, issued_at) for k, _ in won]
    try:
        outcomes: Sequence[IssuedToken | SignerError] = await issuer.engine.sign_many(
            requests, background=True
        )
    except SignerError as error:  # the queue is full (Overloaded), the engine closing
        outcomes = [error] * len(requests)
    stored: list[WarmMark] = []
    for (key, late), outcome in zip(won, outcomes, strict=True):
        item = None if isinstance(outcome, SignerError) else issuer.entry(key, outcome, app)
        await cache.release_lease(key, None if item is None else item[1:])
        if item is None:
            counts["failed"] += 1
            continue
        counts["resigned"] += 1
        counts["late"] += late
        stored += issuer.marks(app, key, item[1], stored=True, asked=False)
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
    request to yield to); each userid counts as asking (keep-warm then tracks it). A
    userid repeated is counted once; one the app's policy refuses is ``refused``."""
    counts = WarmCounts()
    unique = list(dict.fromkeys(userids))
    keys = [issuer.key(app, userid, expire, None) for userid in unique]
    entries = await issuer.cache.get_many(keys)
    now = issuer.clock()
    todo: list[CacheKey] = []
    marks: list[WarmMark] = []
    for key, entry in zip(keys, entries, strict=True):
        if (
            entry is not None
            and issuer.verdict(entry, key, app) == "hit"
            and entry.expires_at - now >= app.refresh_ahead
        ):
            counts.already_warm += 1
            marks += issuer.marks(app, key, entry, stored=False, asked=True)
        else:
            todo.append(key)
    if marks:
        issuer.cache.track(marks)
    requests = [SignRequest(app.sdkappid, key.userid, expire) for key in todo]
    outcomes = await issuer.engine.sign_many(requests, background) if requests else []
    items: list[tuple[CacheKey, CachedToken, int]] = []
    for key, outcome in zip(todo, outcomes, strict=True):
        if isinstance(outcome, SignerError):
            counts.refused.append((key.userid, outcome))
            continue
        counts.signed += 1
        item = issuer.entry(key, outcome, app)
        if item is not None:
            items.append(item)
    if items:
        await issuer.cache.set_many(items)
        issuer.cache.track(
            [m for k, e, _ in items for m in issuer.marks(app, k, e, stored=True, asked=True)]
        )
    return counts

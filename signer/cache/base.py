"""The cache interface: what the service needs of any token store, and the entry it keeps.

An entry carries the userid and sdkappid it was issued for, so a read can check them: a
cache or client bug (such as redis-py's CVE-2023-28858/28859, which could hand one request
another's reply) must never give one user another user's token.
"""

from __future__ import annotations

from collections.abc import Sequence
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


class CacheBackend(Protocol):
    """A shared (or local) token store. Calls never raise for a store outage: a backend
    that cannot answer returns misses and drops writes, and says so in ``healthy``."""

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

    async def release_lease(self, key: CacheKey) -> None: ...

    async def delete(self, keys: Sequence[CacheKey]) -> int: ...

    async def delete_user(self, sdkappid: int, userid: str, known: Sequence[CacheKey] = ()) -> int:
        """Retire every cached token of one user (logout, ban). ``known`` names variants
        the caller can compute (a store may need them to free memory at once); the
        result counts the entries removed that way."""

    def healthy(self) -> bool: ...

    async def close(self) -> None: ...

"""What the Redis backends store, under which names: one place for the layout in Redis.

- a token: ``<prefix>{<sdkappid>:<userid>}:<key version>:<expire>:<userbuf digest>``,
  holding the compact codec bytes (:mod:`signer.cache.codec`), with a PX expiry;
- a revocation marker: ``<prefix>rev:{<sdkappid>:<userid>}``, the time in milliseconds of
  the user's last logout or ban; every token issued at or before it is retired. It is read
  with each token, in the same MGET or pipeline;
- a signing lease: ``<prefix>lease:{<sdkappid>:<userid>}:<key version>:<expire>:<userbuf
  digest>``, holding a random owner id;
- keep-warm's state per app (:mod:`signer.cache.keepwarm`), two sorted sets sharing the
  hash tag ``{kw:<sdkappid>}`` (one slot, so one script reads both):
  ``<prefix>kw:{kw:<sdkappid>}:due``, members ``<expire>:<userid>`` scored by the time
  in ms their token is due for a re-sign, and ``<prefix>kw:{kw:<sdkappid>}:seen``,
  members ``<userid>`` scored by the time in ms the user last asked. On a cluster
  (``warm_shards`` > 1) each app has that pair once per shard, under the hash tag
  ``{kw:<sdkappid>:<shard>}``, a user's entries in the shard of its userid's CRC-32, so
  one app's keep-warm spreads over the masters as its tokens do;
- the eviction channel ``<prefix>evictions``, whose messages name a user as
  ``<prefix><sdkappid>:<userid>``.

A token, its lease and its user's marker share the hash tag ``{sdkappid:userid}``: in a
cluster they live in one slot, so a read of them never spans nodes and one script can store
a token and let go of its lease. Names are bytes, encoded with
``surrogatepass`` so that no userid the service accepts can fail to encode.
"""

from __future__ import annotations

import zlib

from signer.cache import codec
from signer.cache.base import CachedToken, CacheKey


class KeyLayout:
    """The names of one deployment (one key prefix)."""

    def __init__(self, prefix: str = "signer:", warm_shards: int = 1) -> None:
        self.prefix = prefix
        self.warm_shards = warm_shards
        self._raw_prefix = prefix.encode()
        self.eviction_channel = (prefix + "evictions").encode()

    def token(self, key: CacheKey) -> bytes:
        return self._variant(self.prefix, key)

    def lease(self, key: CacheKey) -> bytes:
        return self._variant(self.prefix + "lease:", key)

    @staticmethod
    def _variant(start: str, key: CacheKey) -> bytes:
        variant = f"{key.key_version}:{key.expire}:{key.userbuf_digest}"
        text = f"{start}{{{key.sdkappid}:{key.userid}}}:{variant}"
        return text.encode("utf-8", "surrogatepass")

    def revocation(self, sdkappid: int, userid: str) -> bytes:
        return f"{self.prefix}rev:{{{sdkappid}:{userid}}}".encode("utf-8", "surrogatepass")

    def warm_shard(self, userid: str) -> int:
        """The keep-warm shard holding ``userid``'s entries (always 0 with one shard)."""
        if self.warm_shards == 1:
            return 0
        return zlib.crc32(userid.encode("utf-8", "surrogatepass")) % self.warm_shards

    def warm_due(self, sdkappid: int, shard: int = 0) -> bytes:
        return self._warm(sdkappid, shard, "due")

    def warm_seen(self, sdkappid: int, shard: int = 0) -> bytes:
        return self._warm(sdkappid, shard, "seen")

    def _warm(self, sdkappid: int, shard: int, kind: str) -> bytes:
        tag = f"kw:{sdkappid}" if self.warm_shards == 1 else f"kw:{sdkappid}:{shard}"
        return f"{self.prefix}kw:{{{tag}}}:{kind}".encode()

    def user(self, sdkappid: int, userid: str) -> bytes:
        """What an eviction broadcast names: the user, not a token."""
        return f"{self.prefix}{sdkappid}:{userid}".encode("utf-8", "surrogatepass")

    def evicted_user(self, message: bytes) -> tuple[int, str] | None:
        """The user an eviction broadcast names; None for a message that names none."""
        appid, _, userid = (
            message.removeprefix(self._raw_prefix).decode("utf-8", "replace").partition(":")
        )
        return (int(appid), userid) if appid.isdigit() else None


def read_entry(value: object, revoked: object, key: CacheKey) -> CachedToken | None:
    """The token stored under ``key``'s name, unless it is missing, unreadable, or issued
    at or before its user's revocation marker (``revoked``, read alongside it)."""
    # The key version shown in answers is the cache key's without its key fingerprint.
    key_version = key.key_version.partition("~")[0]
    entry = codec.decode(value, key_version) if isinstance(value, bytes) else None
    revoked_at = int(revoked) if isinstance(revoked, bytes) and revoked.isdigit() else -1
    if entry is not None and entry.issued_at * 1000 <= revoked_at:
        return None  # issued before the user's last logout or ban
    return entry

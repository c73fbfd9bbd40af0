"""The token cache: backends behind one interface, and cache-aside issuing."""

from signer.cache.backends.memory import MemoryCache
from signer.cache.base import CacheBackend, CachedToken, CacheKey
from signer.cache.issuer import AppPolicy, Issued, TokenIssuer

__all__ = [
    "AppPolicy",
    "CacheBackend",
    "CacheKey",
    "CachedToken",
    "Issued",
    "MemoryCache",
    "TokenIssuer",
]

"""The token cache: backends behind one interface, and cache-aside issuing."""

from signer.cache.base import CacheBackend, CachedToken, CacheKey
from signer.cache.issuer import AppPolicy, Issued, TokenIssuer
from signer.cache.memory import MemoryCache

__all__ = [
    "AppPolicy",
    "CacheBackend",
    "CacheKey",
    "CachedToken",
    "Issued",
    "MemoryCache",
    "TokenIssuer",
]

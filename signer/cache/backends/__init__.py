"""Cache backends, one file each, all behind :class:`signer.cache.base.CacheBackend`."""

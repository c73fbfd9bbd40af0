"""Moved to :mod:`tests.support.redis_server` (shared with bench/); this name is kept only
for test files that were being edited when it moved. Import from ``tests.support``."""

from tests.support.ports import free_port
from tests.support.redis_server import RedisCluster, RedisSentinel, RedisServer, SentinelNode

__all__ = ["RedisCluster", "RedisSentinel", "RedisServer", "SentinelNode", "free_port"]

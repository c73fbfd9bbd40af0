"""Helpers the tests and the benchmarks in bench/ share: free ports and real redis-server
processes (a server, a cluster, Sentinel), each started in a temp dir and stopped by pid."""

from tests.support.ports import free_port
from tests.support.redis_server import RedisCluster, RedisSentinel, RedisServer, SentinelNode

__all__ = ["RedisCluster", "RedisSentinel", "RedisServer", "SentinelNode", "free_port"]

"""How locust's users connect: each on one kept-alive connection, opened at once.

Two defaults of locust's HTTP stack made a storm's clients, not the service, the slowest
part of a run on one machine:

* geventhttpclient (2.6.1, what FastHttpUser runs on) checks a pooled connection before
  reusing it with ``select.select([sock], [], [], 0)``, which cannot take a descriptor of
  1024 or more: it raises ``ValueError``, the pool takes that for "dead", closes the
  connection and opens another. Of 2,000 users ~1,000 kept their connection; the others
  connected afresh for every request (~100 connections a second, thousands in TIME-WAIT),
  which is not the load a fleet of keep-alive clients puts on a service.
  :func:`socket_is_idle` is the same check on ``poll``, which has no such limit.
* gevent resolves names on a pool of threads by default, even ``127.0.0.1``. With the hub
  busy on a thousand users' requests, each answer waits its turn for the GIL and the hub:
  new connections were opened at ~11 a second, and the last users of a storm waited up to
  80 s for their first one (a cold p99 of 30-44 s that the service's own logs, at most
  0.8 s, did not have). The blocking resolver answers an address at once; a host name is
  resolved once per connection, which keep-alive makes rare.

:func:`install` applies both, before the first connection (:mod:`loadtest.scenarios` calls
it on import); ``GEVENT_RESOLVER`` set in the environment still wins.
"""

from __future__ import annotations

import os
import select
from typing import Any

import gevent
from gevent import monkey
from geventhttpclient.connectionpool import ConnectionPool

_poll: Any = monkey.get_original("select", "poll")  # a zero timeout never blocks the hub
_NOT_IDLE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def socket_is_idle(sock: Any) -> bool:
    """Whether a kept-alive connection can carry the next request: open, and nothing to
    read (data or a FIN while idle means the server closed it or sent something unasked)."""
    if sock is None:
        return False
    try:
        fd = sock.fileno()
        if fd < 0:
            return False
        poller = _poll()
        poller.register(fd, _NOT_IDLE)
        return not poller.poll(0)
    except (OSError, ValueError):
        return False


def install() -> None:
    """Reuse connections with :func:`socket_is_idle`; resolve without threads."""
    ConnectionPool._is_socket_alive = staticmethod(socket_is_idle)  # type: ignore[method-assign,assignment]
    if "GEVENT_RESOLVER" not in os.environ:
        gevent.config.resolver = "block"

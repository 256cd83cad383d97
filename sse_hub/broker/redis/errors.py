"""Redis and socket errors as ``BrokerUnavailable`` (503): the one mapping the brokers use.

Invariants:

1. ``REDIS_ERRORS`` is what a Redis client raises when the store cannot answer:
   ``RedisError`` (a lost connection, MOVED/ASK/TRYAGAIN, a refused script), ``OSError``
   (sockets, and the ``TimeoutError`` of ``asyncio.timeout``) and
   ``RedisClusterException``, which redis-py's cluster client raises outside
   ``RedisError`` when no node answers or a slot has no master.
2. ``unavailable`` chains what it maps (``raise ... from exc``), so the cause is logged;
   anything else (``BrokerUnavailable`` itself, a bug, cancellation) passes unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisClusterException, RedisError

from sse_hub.errors import BrokerUnavailable

__all__ = ["REDIS_ERRORS", "unavailable"]

REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


@contextlib.contextmanager
def unavailable(what: str, *, cause: bool = False) -> Iterator[None]:
    """Raise ``BrokerUnavailable(what)`` for a Redis or socket error in the block;
    ``cause``: say the error too (``"what: error"``)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(f"{what}: {exc}" if cause else what) from exc

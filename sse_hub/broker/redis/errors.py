"""Redis and socket errors as ``BrokerUnavailable`` (503): the one mapping the brokers use;
and a Redis URL with its password redacted, for those errors and the logs.

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
from urllib.parse import urlsplit

from redis.exceptions import RedisClusterException, RedisError

from sse_hub.errors import BrokerUnavailable

__all__ = ["REDIS_ERRORS", "redacted", "unavailable"]

REDIS_ERRORS = (RedisError, RedisClusterException, OSError)


@contextlib.contextmanager
def unavailable(what: str, *, cause: bool = False) -> Iterator[None]:
    """Raise ``BrokerUnavailable(what)`` for a Redis or socket error in the block;
    ``cause``: say the error too (``"what: error"``)."""
    try:
        yield
    except REDIS_ERRORS as exc:
        raise BrokerUnavailable(f"{what}: {exc}" if cause else what) from exc


def redacted(url: str) -> str:
    """A Redis URL as errors and logs may show it: the password as ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()

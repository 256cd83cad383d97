"""A bounded count of open requests of one kind: NDJSON publish streams
(``limits.max_publish_streams``), dashboard streams.

Invariant: a slot is taken before the request does any work and given back in a
``finally`` (``taken`` is a context manager), so the count is the number open, whatever
way each one ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from sse_hub.errors import Unavailable


class Slots:
    """At most ``limit`` open at once; past it ``taken`` raises ``refusal(limit)`` (a 503
    with Retry-After)."""

    def __init__(self, limit: int, refusal: Callable[[int], Unavailable]) -> None:
        self.limit = limit
        self.open = 0
        self._refusal = refusal

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise self._refusal(self.limit)
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1

"""A bounded count of open requests of one kind (``limits.max_publish_streams``).

Invariant: a slot is taken before the request does any work and given back in a
``finally`` (``taken`` is a context manager), so the count is the number open, whatever
way each one ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sse_hub.errors import TooManyPublishStreams


class Slots:
    """At most ``limit`` open at once; past it ``taken`` raises ``TooManyPublishStreams``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    @contextlib.contextmanager
    def taken(self) -> Iterator[None]:
        if self.open >= self.limit:
            raise TooManyPublishStreams(
                f"{self.limit} publish streams are open already", {"max_publish_streams": self.limit}
            )
        self.open += 1
        try:
            yield
        finally:
            self.open -= 1

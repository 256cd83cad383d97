"""Who waits for the directory's next write to Redis (``ClientDirectory.written``).

Invariants: a waiter resolves only after a write that began after it started waiting
succeeded (``around`` takes the waiters before the write sends anything); a write that
fails hands them to the next write, so none is resolved early and none is dropped (the
caller bounds its wait: Redis may stay away). No task of its own: the directory's upkeep
writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class Written:
    def __init__(self) -> None:
        self._next: asyncio.Future[None] | None = None

    @property
    def wanted(self) -> bool:
        """Someone waits: the next upkeep round writes even with nothing changed."""
        return self._next is not None

    def wait(self) -> Awaitable[None]:
        """Resolves after the next write that begins from now on succeeds."""
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
        return asyncio.shield(self._next)

    async def around(self, write: Callable[[], Awaitable[None]]) -> None:
        """Run ``write`` for the waiters so far: they resolve if it succeeds, else wait on."""
        taken, self._next = self._next, None
        try:
            await write()
        except BaseException:
            if taken is not None:
                if self._next is None:
                    self._next = taken
                else:
                    self._next.add_done_callback(lambda _: taken.done() or taken.set_result(None))
            raise
        if taken is not None and not taken.done():
            taken.set_result(None)

"""``AsyncResource``: ``async with`` for the client's objects that hold a connection.

Invariant: leaving the ``async with`` block calls ``aclose()`` exactly as a caller would,
whatever ended the block; ``aclose`` itself says what it releases.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class AsyncResource(abc.ABC):
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @abc.abstractmethod
    async def aclose(self) -> None: ...

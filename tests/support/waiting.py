"""Waiting on conditions, not time: ``wait_until`` for state, ``eventually`` for a check
that takes I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def wait_until(predicate: Callable[[], bool], timeout: float = 5, interval: float = 0.01) -> None:
    """Poll a condition (state, not time) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5, interval: float = 0.02) -> None:
    """``wait_until`` for a condition that takes I/O to evaluate (an HTTP request, a Redis
    command): await ``check`` until it returns true; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
            await asyncio.sleep(interval)

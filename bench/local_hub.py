"""A hub process on a free loopback port for the publish benchmarks
(``publish_stream.py``, ``publisher_batching.py``): started from this checkout with the
running Python, quiet, stopped when the block ends."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def local_hub() -> Iterator[str]:
    """``with local_hub() as url:`` a memory-broker hub at ``url``; wait for it with
    ``wait_healthy``."""
    port = free_port()
    hub = subprocess.Popen(
        [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, "SSE_HUB_LOG__LEVEL": "warning"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        hub.terminate()
        hub.wait(10)


async def wait_healthy(url: str, session: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(20):
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"{url}/healthz") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.1)

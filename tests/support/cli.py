"""The ``sse-hub`` command line as a subprocess of a test: a one-shot run (``run_sse_hub``)
and a running ``sse-hub tail`` whose output is read line by line, every read bounded."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

from tests.support.paths import ROOT

CLI = [sys.executable, "-m", "sse_hub"]
# The CLI reads these as defaults; tests set them explicitly or not at all.
BASE_ENV = {key: value for key, value in os.environ.items() if key not in ("SSE_HUB_URL", "SSE_HUB_TOKEN")}


def run_sse_hub(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``sse-hub *args`` to its end, with no ``SSE_HUB_*`` settings but those in ``env``."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("SSE_HUB_")}
    return subprocess.run(
        [*CLI, *args], env={**clean, **(env or {})}, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


class Tail:
    """A running ``sse-hub tail``: read its stdout lines and stderr notes with timeouts."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.notes: list[str] = []

    async def line(self, timeout: float = 10) -> str:
        assert self.process.stdout is not None
        async with asyncio.timeout(timeout):
            line = await self.process.stdout.readline()
        assert line, f"tail ended; stderr: {self.notes}"
        return line.decode()

    async def note(self, containing: str, timeout: float = 15) -> str:
        """Read stderr until a line contains ``containing``."""
        assert self.process.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                line = (await self.process.stderr.readline()).decode()
                assert line, f"tail ended; stderr: {self.notes}"
                self.notes.append(line)
                if containing in line:
                    return line

    async def interrupt(self, sig: int = signal.SIGINT) -> tuple[int, str]:
        """Send ``sig``; returns the exit code and the rest of stderr."""
        assert self.process.stderr is not None
        self.process.send_signal(sig)
        async with asyncio.timeout(15):
            rest = await self.process.stderr.read()
            code = await self.process.wait()
        return code, rest.decode()


@contextlib.asynccontextmanager
async def start_tail(*args: str) -> AsyncIterator[Tail]:
    """``async with start_tail("--url", hub.url, "news") as tail``; killed on the way out."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "tail",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=BASE_ENV,
        cwd=ROOT,
    )
    try:
        yield Tail(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

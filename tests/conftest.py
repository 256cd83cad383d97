"""Shared fixtures: the app on a test server, SSE streams, a real redis-server, the real
``sse-hub`` process. Missing binaries fail loudly with the command that installs them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.app import create_app
from sse_hub.config import Settings
from tests.sse_client import EventStream

ROOT = Path(__file__).resolve().parent.parent


def make_settings(**sections: Any) -> Settings:
    """``make_settings(limits={"max_connections": 2}, demo_page=False)``."""
    return Settings.model_validate(sections)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: run `apt-get install -y {package}` (or `bash .ci/run`)", pytrace=False)
    return path


async def wait_until(predicate: Callable[[], bool], timeout: float = 5, interval: float = 0.01) -> None:
    """Poll a condition (state, not time) until it holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


HubClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture
async def hub_client(aiohttp_client: Any) -> HubClientFactory:
    """``client = await hub_client(limits={...})``: the real app on a loopback test server."""

    async def start(settings: Settings | None = None, **sections: Any) -> TestClient[Any, Any]:
        app = create_app(settings or make_settings(**sections))
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return start


@pytest.fixture
async def client(hub_client: HubClientFactory) -> TestClient[Any, Any]:
    return await hub_client()


@contextlib.asynccontextmanager
async def open_stream(
    client: TestClient[Any, Any] | aiohttp.ClientSession, path: str, headers: dict[str, str] | None = None
) -> AsyncIterator[EventStream]:
    """Open an SSE stream, check it is one, read its ``connected`` event."""
    response = await client.get(path, headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=30))
    try:
        assert response.status == 200, await response.text()
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        stream = EventStream(response)
        await stream.connected()
        yield stream
    finally:
        response.close()


async def publish(client: TestClient[Any, Any], body: object, expect: int = 202, **kwargs: Any) -> Any:
    response = await client.post("/broadcast", json=body, **kwargs)
    payload = await response.json()
    assert response.status == expect, payload
    return payload


# -- real processes ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """A real redis-server on a free loopback port; yields its URL."""
    binary = require_binary("redis-server", "redis-server")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sse-hub-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


class HubProcess:
    """A real ``sse-hub serve`` process on loopback."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.port = port
        self.process = process
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    """``hub = hub_process(env={...}, args=[...])`` starts ``sse-hub serve`` and waits for
    ``/healthz``; every process is stopped at teardown."""
    started: list[HubProcess] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None) -> HubProcess:
        port = port or free_port()
        log_path = tmp_path / f"hub-{port}-{len(started)}.log"
        full_env = {**os.environ, "SSE_HUB_LOG__LEVEL": "info", **(env or {})}
        command = [sys.executable, "-m", "sse_hub", "serve", "--host", "127.0.0.1", "--port", str(port), *(args or [])]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        hub = HubProcess(port, process, log_path)
        started.append(hub)
        wait_for_http(f"{hub.url}/healthz", process, log_path)
        return hub

    yield start
    for hub in started:
        if hub.process.poll() is None:
            hub.process.kill()
            hub.process.wait(timeout=10)


def wait_for_http(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 15) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sse-hub exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"sse-hub did not answer {url} within {timeout}s:\n{log_path.read_text()}")

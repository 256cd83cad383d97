"""Shared fixtures and helpers: the app on a test server, SSE streams, publishing, waiting
on conditions, a real redis-server (shared, or owned by one test), the real ``sse-hub``
process. Missing binaries fail loudly with the command that installs them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from redis.asyncio import Redis

from sse_hub.config.settings import Settings
from sse_hub.messages.contract import Broker
from sse_hub.messages.message import Draft, Message
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
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


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5, interval: float = 0.02) -> None:
    """``wait_until`` for a condition that takes I/O to evaluate (an HTTP request, a Redis
    command): await ``check`` until it returns true; ``TimeoutError`` after ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            if await check():
                return
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


async def get_stats(client: TestClient[Any, Any], query: str = "") -> Any:
    response = await client.get(f"/stats{query}")
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return await response.json()


async def expect_error(response: aiohttp.ClientResponse, status: int) -> Any:
    """A ``status`` reply with a JSON error body, which it returns; any other status fails
    at once (a stream is never read to its end)."""
    if response.status != status:
        response.close()
        raise AssertionError(f"expected {status}, got {response.status} ({response.content_type})")
    payload = await response.json()
    assert set(payload) == {"error", "detail"}, payload
    return payload


async def read_raw_until(
    client: TestClient[Any, Any], path: str, marker: bytes, headers: dict[str, str] | None = None, timeout: float = 5
) -> bytes:
    """The bytes of a stream as sent, from the first until ``marker`` has arrived."""
    response = await client.get(path, headers=headers)
    try:
        raw = b""
        async with asyncio.timeout(timeout):
            while marker not in raw:
                chunk = await response.content.readany()
                if not chunk:
                    raise EOFError(f"the stream ended before {marker!r}: {raw!r}")
                raw += chunk
    finally:
        response.close()
    return raw


async def broadcast(session: aiohttp.ClientSession, base_url: str, body: object, expect: int = 202) -> Any:
    """``publish`` to a hub in another process (or to nginx in front of hubs): POST ``body``
    to ``{base_url}/broadcast``, check the status, return the JSON reply."""
    async with session.post(f"{base_url}/broadcast", json=body) as response:
        payload = await response.json()
        assert response.status == expect, payload
        return payload


def client_id_of(stream: EventStream) -> str:
    """The client id the hub announced in the stream's ``connected`` event."""
    return str(json.loads(stream.parser.events[0].data)["client_id"])


@contextlib.contextmanager
def stalled_subscriber(client: TestClient[Any, Any], path: str, last_event_id: str = "") -> Iterator[socket.socket]:
    """A subscriber that sends its request and never reads: a tiny receive buffer, set
    before connecting so the TCP window stays small, fills at once."""
    resume = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(5)
        sock.connect((str(client.host), int(client.port)))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{resume}\r\n".encode())
        yield sock
    finally:
        sock.close()


async def publish_until_dropped(client: TestClient[Any, Any], body: object, max_messages: int = 64) -> None:
    """Publish ``body`` until the hub has dropped every subscriber (a stalled one), at most
    ``max_messages`` times: with 32 kB of data, 2 MB, far over its buffer and the socket's."""
    hub = client.server.app[HUB]
    for _ in range(max_messages):
        await publish(client, body)
        if not len(hub.registry):
            break
    await wait_until(lambda: len(hub.registry) == 0)


# -- brokers without the app ------------------------------------------------------------


def draft(*channels: str, data: str = "x") -> Draft:
    """A plain draft to ``channels``, as the broker tests publish them."""
    return Draft(event="message", data=data, channels=channels)


@pytest.fixture
def prefix() -> str:
    """A fresh Redis key prefix, so tests sharing one redis-server never see each other."""
    return f"test-{secrets.token_hex(4)}"


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    """A plain client on the test Redis, to look at and tamper with the broker's keys."""
    client = Redis.from_url(redis_server, protocol=2)
    yield client
    await client.aclose()


AnyBroker = TypeVar("AnyBroker", bound=Broker)


class StartedBrokers:
    """The brokers a fixture started, each with the list its ``deliver`` appends to."""

    def __init__(self) -> None:
        self.brokers: list[Broker] = []

    async def start(self, broker: AnyBroker) -> tuple[AnyBroker, list[Message]]:
        delivered: list[Message] = []
        self.brokers.append(broker)  # before start(): a broker that failed half-way is stopped too
        await broker.start(delivered.append)
        return broker, delivered

    async def stop(self) -> None:
        for broker in self.brokers:
            await broker.stop()


# -- real processes ---------------------------------------------------------------------


class RedisProcess:
    """A redis-server on a loopback port, without persistence: killed and started again on
    the same port, it comes back empty, as after a crash."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary = binary
        self.port = port
        self.workdir = workdir
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, durable: bool = False) -> None:
        """``durable``: an append-only file synced on every write, so a restart keeps every
        acknowledged write (else none: it comes back empty)."""
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if durable else ["--appendonly", "no"]
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence]
        self.process = subprocess.Popen(
            [*command, "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.process)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running_redis(workdir: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(require_binary("redis-server", "redis-server"), free_port(), workdir)
    try:
        server.start()
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, shared by the session; yields its URL."""
    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    """A redis-server this test owns, so it can ``kill()`` it and ``start()`` it again."""
    with running_redis(tmp_path) as server:
        yield server


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

"""The fixtures every test folder shares, loaded by ``tests/conftest.py`` as a plugin.

- The app: ``hub_client`` (a factory: the real app on a loopback test server), ``client``.
- Brokers: ``start_broker`` (one factory for every kind, ``tests.support.brokers``) and
  ``start_hubs`` (several apps on one broker).
- Redis: ``redis_server`` (one per session), ``own_redis`` (one a test may kill),
  ``redis_cluster`` (a 3-master cluster per session), ``redis`` (a plain client) and
  ``prefix`` (a fresh key prefix per test).
- Credentials: ``signers`` (subscriber tokens per algorithm, ``tests.support.tokens``).
- Processes: ``hub_process`` (a factory: real ``sse-hub serve`` processes).

Missing binaries fail loudly with the command that installs them.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from redis.asyncio import Redis

from sse_hub.config.settings import Settings
from sse_hub.messages.contract import Backend, Broker, ClientDirectory, Summary, TicketStore
from sse_hub.messages.message import Message
from sse_hub.messages.positions import PerChannelBroker
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
from tests.support.brokers import BrokerKind, StartedBrokers, broker_section, new_backend
from tests.support.http import HubClientFactory
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, RedisProcess, free_port, running_redis, start_hub, stop_hubs
from tests.support.redis_cluster import Cluster, running_cluster
from tests.support.settings import make_settings
from tests.support.tokens import SECRET, Signer, public_key_file

# -- the app ----------------------------------------------------------------------------


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


# -- Redis ------------------------------------------------------------------------------


@pytest.fixture
def prefix() -> str:
    """A fresh Redis key prefix, so tests sharing one redis-server never see each other."""
    return f"test-{secrets.token_hex(4)}"


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


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    """A plain client on the test Redis, to look at and tamper with the broker's keys."""
    client = Redis.from_url(redis_server, protocol=2)
    yield client
    await client.aclose()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A 3-master Redis Cluster shared by the session (tests use their own key prefix, hence
    their own slot); ``running_cluster`` gives a test a cluster of its own."""
    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        yield cluster


def shared_url(request: pytest.FixtureRequest, kind: BrokerKind) -> str:
    """The URL of the session's server for ``kind``, started on first use."""
    if kind == "redis":
        return str(request.getfixturevalue("redis_server"))
    cluster: Cluster = request.getfixturevalue("redis_cluster")
    return cluster.url


# -- brokers ----------------------------------------------------------------------------

Started = tuple[Any, list[Message]]  # a broker of the kind asked for, and what it delivered


class BrokerFactory:
    """The ``start_broker`` fixture: ``broker, delivered = await start_broker("redis")``
    starts a broker of that kind and returns it with the list its ``deliver`` appends to;
    every broker is stopped at teardown.

    A Redis kind runs on the session's server (``url=`` for another one) under the test's
    ``prefix``; the instance id is ``<prefix>-<n>`` unless given. ``linger_seconds`` goes to
    the Redis brokers, anything else is a settings section (``history={"size": 3}``). The
    kind may come from ``@ON_EVERY_BROKER`` (indirect parametrization) instead.
    """

    def __init__(self, request: pytest.FixtureRequest, prefix: str) -> None:
        self.request = request
        self.prefix = prefix
        self.default_kind: BrokerKind | None = getattr(request, "param", None)
        self.started = StartedBrokers()
        self.count = 0
        self._backends: dict[Broker, Backend] = {}

    async def __call__(
        self,
        kind: BrokerKind | None = None,
        instance_id: str | None = None,
        *,
        url: str | None = None,
        linger_seconds: float | None = None,
        describe: Callable[[], Summary] | None = None,
        **sections: Any,
    ) -> Started:
        return await self._start(self.started, kind, instance_id, url, linger_seconds, sections, describe)

    def directory(self, broker: Broker) -> ClientDirectory:
        """The client directory created with ``broker``."""
        return self._backends[broker].directory

    def tickets(self, broker: Broker) -> TicketStore:
        """The ticket store created with ``broker``."""
        return self._backends[broker].tickets

    @contextlib.asynccontextmanager
    async def group(
        self,
        count: int,
        kind: BrokerKind | None = None,
        *,
        url: str | None = None,
        linger_seconds: float | None = None,
        **sections: Any,
    ) -> AsyncIterator[list[Started]]:
        """``async with start_broker.group(2, "sharded") as [(a, got_a), (b, got_b)]``:
        brokers stopped on leaving the block (before a cluster of the test's own stops)."""
        group = StartedBrokers()
        try:
            yield [await self._start(group, kind, None, url, linger_seconds, sections) for _ in range(count)]
        finally:
            await group.stop()

    async def _start(
        self,
        started: StartedBrokers,
        kind: BrokerKind | None,
        instance_id: str | None,
        url: str | None,
        linger_seconds: float | None,
        sections: dict[str, Any],
        describe: Callable[[], Summary] | None = None,
    ) -> Started:
        kind = kind or self.default_kind
        if kind is None:
            raise TypeError("start_broker needs a kind: memory, redis, redis-cluster or sharded")
        if kind != "memory":
            sections = {"broker": broker_section(kind, url or shared_url(self.request, kind), self.prefix), **sections}
        instance_id = instance_id or f"{self.prefix}-{self.count}"
        self.count += 1
        backend = new_backend(kind, make_settings(**sections), instance_id, linger_seconds, describe)
        self._backends[backend.broker] = backend
        return await started.start(backend)

    async def stop(self) -> None:
        """Stop every broker started so far (the test's end does too)."""
        started, self.started = self.started, StartedBrokers()
        await started.stop()


@pytest.fixture
async def start_broker(request: pytest.FixtureRequest, prefix: str) -> AsyncIterator[BrokerFactory]:
    """One factory for every broker kind (``BrokerFactory``)."""
    factory = BrokerFactory(request, prefix)
    yield factory
    await factory.stop()


HubsFactory = Callable[..., Awaitable[list[TestClient[Any, Any]]]]


@pytest.fixture
def start_hubs(hub_client: HubClientFactory, request: pytest.FixtureRequest, prefix: str) -> HubsFactory:
    """``a, b = await start_hubs("redis")``: ``count`` apps (2 by default), each on its own
    test server, sharing one broker of ``kind`` under the test's ``prefix``: the session's
    server, or ``url=``. Other keywords are settings sections, the same for every hub. On
    ``memory`` the hubs are one app, returned ``count`` times."""

    async def start(
        kind: BrokerKind, count: int = 2, *, url: str | None = None, **sections: Any
    ) -> list[TestClient[Any, Any]]:
        if kind == "memory":
            return [await hub_client(**sections)] * count
        broker = broker_section(kind, url or shared_url(request, kind), prefix)
        hubs = [await hub_client(broker=broker, **sections) for _ in range(count)]
        if kind == "sharded":
            assert all(isinstance(hub.app[HUB].broker, PerChannelBroker) for hub in hubs)
        return hubs

    return start


# -- credentials ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Signer]:
    """A ``Signer`` for subscriber tokens per algorithm (HS256, RS256, ES256), keys made per module."""
    directory = tmp_path_factory.mktemp("jwt-keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_file, ec_file = public_key_file(directory, rsa_key), public_key_file(directory, ec_key)
    return {
        "HS256": Signer("HS256", SECRET, {"secret": SECRET, "algorithms": ["HS256"]}),
        "RS256": Signer(
            "RS256", rsa_key, {"public_key_file": str(rsa_file), "algorithms": ["RS256"]}, rsa_file.read_bytes()
        ),
        "ES256": Signer(
            "ES256", ec_key, {"public_key_file": str(ec_file), "algorithms": ["ES256"]}, ec_file.read_bytes()
        ),
    }


# -- real processes ---------------------------------------------------------------------


@pytest.fixture
def hub_process(tmp_path: Path) -> Iterator[Callable[..., HubProcess]]:
    """``hub = hub_process(env={...}, args=[...])`` starts ``sse-hub serve`` and waits for
    ``/healthz``; every process is stopped at teardown."""
    started: list[HubProcess] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None, port: int | None = None) -> HubProcess:
        port = port or free_port()
        hub = start_hub(tmp_path / f"hub-{port}-{len(started)}.log", port, env or {}, ROOT, args)
        started.append(hub)
        return hub

    yield start
    stop_hubs(started)

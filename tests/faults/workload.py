"""Publishers and subscribers, as clients of the hubs over HTTP only.

- A *lineage* is one subscriber as a browser tab would be: fixed channels, one stream at a
  time, each (re)connection on a random instance of its own set, with the last id it saw
  as ``Last-Event-ID``. It moves after a random lifetime, and reconnects when a stream
  ends, fails, or is silent past ``READ_TIMEOUT_SECONDS`` (hubs send a heartbeat every
  second). Every event is recorded with the connection it came on.
- A *publisher* posts singles, JSON-array batches and multi-channel messages to random
  instances; each message's ``data`` is a unique token, and the ids of a 202 are recorded.

Every loop is bounded in count and time, every request has a timeout, and only
127.0.0.1 is used (the URLs come from the deployment).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable

import aiohttp

from tests.faults.history import Connection, Event, HttpError, Item, LineageRecord, Publish, Record
from tests.faults.plan import CHANNEL_WEIGHTS, CHANNELS, HUBS, Lineage, Plan, Publisher, actor_random
from tests.faults.processes import poll

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 4.0
PUBLISH_TIMEOUT_SECONDS = 8.0
MAX_CONNECTIONS_PER_LINEAGE = 5000
MAX_PUBLISHES_PER_PUBLISHER = 50_000
MAX_IN_FLIGHT = 48
MAX_EVENT_BYTES = 1 << 20


class StreamParser:
    """Just enough of WHATWG HTML 9.2.6 for the hub's streams: lines end at LF (CR before
    it dropped), a blank line dispatches, ``id`` sets the last event id as a browser does."""

    def __init__(self) -> None:
        self._buffer = b""
        self._name = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[tuple[str, str | None, str]]:
        """Dispatched events as (name, id, data); id None when the event had no id line."""
        self._buffer += chunk
        if len(self._buffer) > MAX_EVENT_BYTES:
            raise ValueError("an event over 1 MiB")
        events = []
        while b"\n" in self._buffer:
            raw, self._buffer = self._buffer.split(b"\n", 1)
            line = raw.decode().removesuffix("\r")
            if not line:
                if self._data or self._name:
                    events.append((self._name or "message", self._id, "\n".join(self._data)))
                self._name, self._data, self._id = "", [], None
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                self._name = value
            elif field == "data":
                self._data.append(value)
            elif field == "id":
                self._id = value
        return events


class Workload:
    """The clients of one run; ``url(instance)`` is where a client reaches that hub."""

    def __init__(self, plan: Plan, record: Record, url: Callable[[int], str]) -> None:
        self.plan = plan
        self.record = record
        self._url = url
        self.last_ids: dict[str, str] = {}
        self._moving = False
        self._publishing = False
        self._lineage_tasks: list[asyncio.Task[None]] = []
        self._publisher_tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._publish_session: aiohttp.ClientSession | None = None
        self._records = {lin.name: LineageRecord(lin.name, lin.channels) for lin in plan.lineages}
        record.lineages = list(self._records.values())

    async def __aenter__(self) -> Workload:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0))
        self._publish_session = aiohttp.ClientSession(timeout=timeout)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop_publishers()
        await self.stop_lineages()
        for session in (self._session, self._publish_session):
            if session is not None:
                await session.close()

    # -- subscribers ---------------------------------------------------------------------

    def start_lineages(self) -> None:
        for lineage in self.plan.lineages:
            task = asyncio.create_task(self._lineage(lineage), name=f"lineage-{lineage.name}")
            self._lineage_tasks.append(task)

    def set_moving(self, moving: bool) -> None:
        """Whether lineages leave their streams after a random lifetime (off at the end)."""
        self._moving = moving

    async def stop_lineages(self) -> None:
        tasks, self._lineage_tasks = self._lineage_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def connected_lineages(self) -> int:
        return sum(1 for rec in self._records.values() if any(c.connected_at for c in rec.connections))

    async def _lineage(self, lineage: Lineage) -> None:
        rng = actor_random(self.plan.seed, f"sub/{lineage.name}")
        record = self._records[lineage.name]
        for _ in range(MAX_CONNECTIONS_PER_LINEAGE):
            instance = rng.choice(lineage.instances)
            lifetime = rng.uniform(2.0, 10.0)
            pause = rng.uniform(0.05, 0.4)
            await self._connect(lineage, record, instance, lifetime, probe=False)
            await asyncio.sleep(pause)

    async def probe(self, timeout: float = 6.0, quiet_seconds: float = 1.5) -> None:
        """After the run, each lineage opens one more stream (on one of its instances, with
        its last id), as a reloaded page would, and reads until ``quiet_seconds`` pass
        without a message."""

        async def one(lineage: Lineage) -> None:
            rng = actor_random(self.plan.seed, f"probe/{lineage.name}")
            instance = rng.choice(lineage.instances)
            record = self._records[lineage.name]
            await self._connect(lineage, record, instance, timeout, probe=True, quiet_seconds=quiet_seconds)

        await asyncio.gather(*(one(lineage) for lineage in self.plan.lineages))

    async def _connect(
        self,
        lineage: Lineage,
        record: LineageRecord,
        instance: int,
        lifetime: float | None,
        *,
        probe: bool,
        quiet_seconds: float | None = None,
    ) -> None:
        assert self._session is not None
        resume = self.last_ids.get(lineage.name)
        connection = Connection(len(record.connections), instance, resume, time.monotonic(), probe=probe)
        record.connections.append(connection)
        headers = {"Accept": "text/event-stream"}
        if resume is not None:
            headers["Last-Event-ID"] = resume
        params = [("channel", channel) for channel in lineage.channels]
        deadline = None if lifetime is None else time.monotonic() + lifetime
        if probe:
            deadline = time.monotonic() + (lifetime or 0.0)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                response = await self._session.get(f"{self._url(instance)}/events", params=params, headers=headers)
            async with response:
                connection.status = response.status
                if response.status != 200:
                    body = await _short_body(response)
                    self._http_error(f"subscribe {lineage.name}", instance, response.status, body)
                    connection.end = f"status {response.status}"
                    return
                connection.end = await self._read(lineage, record, connection, response, deadline, quiet_seconds)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError, UnicodeDecodeError) as exc:
            connection.end = f"{type(exc).__name__}: {exc}"[:200]
        except asyncio.CancelledError:
            connection.end = "stopped"
            raise
        finally:
            connection.ended_at = time.monotonic()

    async def _read(
        self,
        lineage: Lineage,
        record: LineageRecord,
        connection: Connection,
        response: aiohttp.ClientResponse,
        deadline: float | None,
        quiet_seconds: float | None,
    ) -> str:
        parser = StreamParser()
        last_message = time.monotonic()
        while True:
            now = time.monotonic()
            wait = READ_TIMEOUT_SECONDS
            # A lineage leaves after its lifetime only while moving is on (not at the end).
            if deadline is not None and (self._moving or connection.probe):
                if now >= deadline:
                    return "moved"
                wait = min(wait, deadline - now)
            if quiet_seconds is not None:
                if now - last_message >= quiet_seconds:
                    return "quiet"
                wait = min(wait, quiet_seconds - (now - last_message))
            try:
                async with asyncio.timeout(wait):
                    chunk = await response.content.readany()
            except TimeoutError:
                if time.monotonic() - now < READ_TIMEOUT_SECONDS - 0.01:
                    continue  # a lifetime or quiet period ended, not the read timeout
                return "silent"
            if not chunk:
                return "ended by the hub"
            for name, event_id, data in parser.feed(chunk):
                at = time.monotonic()
                kind = name if name in ("connected", "reset") else "message"
                if kind == "connected" and connection.connected_at is None:
                    connection.connected_at = at
                if kind == "message":
                    last_message = at
                if event_id is not None:
                    self.last_ids[lineage.name] = event_id
                record.events.append(Event(at, connection.index, kind, name, event_id, data))

    # -- publishers ----------------------------------------------------------------------

    async def publish_once(self, body: object, instance: int, items: list[Item], who: str) -> Publish:
        """POST one body; record it (acknowledged or not) with its ids."""
        assert self._publish_session is not None
        publish = Publish(who, instance, items, isinstance(body, list), time.monotonic())
        self.record.publishes.append(publish)
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                async with self._publish_session.post(f"{self._url(instance)}/broadcast", json=body) as response:
                    publish.status = response.status
                    text = await response.text()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            publish.error = f"{type(exc).__name__}: {exc}"[:200]
            return publish
        finally:
            publish.done_at = time.monotonic()
        if publish.acknowledged:
            try:
                reply = json.loads(text)
                receipts = reply if isinstance(reply, list) else [reply]
                publish.ids = [str(receipt["id"]) for receipt in receipts]
            except (ValueError, KeyError, TypeError):
                self.record.harness_errors.append(f"a 202 with an unreadable body: {text[:200]!r}")
        else:
            self._http_error(who, instance, publish.status or 0, text[:300])
        return publish

    async def warm_up(self, timeout: float = 15.0) -> None:
        """One message per channel (retried until acknowledged), then wait until every
        lineage has an id to resume from: from here on each reconnection resumes."""
        for index, channel in enumerate(CHANNELS):
            token = f"{self.plan.seed}-warm-{index}"
            for attempt in range(20):
                item = Item(f"{token}-{attempt}", (channel,))
                body = {"data": item.token, "channels": [channel]}
                if (await self.publish_once(body, (index + attempt) % HUBS, [item], "warm-up")).acknowledged:
                    break
                await asyncio.sleep(0.2)
        await poll(lambda: len(self.last_ids) == len(self.plan.lineages), timeout)

    def start_publishers(self) -> None:
        self._publishing = True
        for publisher in self.plan.publishers:
            task = asyncio.create_task(self._publisher(publisher), name=f"publisher-{publisher.name}")
            self._publisher_tasks.append(task)

    async def stop_publishers(self) -> None:
        """Stop publishing; a request in flight finishes (bounded by its timeout)."""
        self._publishing = False
        tasks, self._publisher_tasks = self._publisher_tasks, []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS + 2):
                await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _publisher(self, publisher: Publisher) -> None:
        name = publisher.name
        rng = actor_random(self.plan.seed, f"pub/{name}")
        in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        running: set[asyncio.Task[Publish]] = set()
        try:
            await self._publish_loop(publisher, rng, in_flight, running)
        finally:
            await asyncio.gather(*running, return_exceptions=True)  # each bounded by its timeout

    async def _publish_loop(
        self,
        publisher: Publisher,
        rng: random.Random,
        in_flight: asyncio.Semaphore,
        running: set[asyncio.Task[Publish]],
    ) -> None:
        name = publisher.name
        for number in range(MAX_PUBLISHES_PER_PUBLISHER):
            if not self._publishing:
                return
            home_draw, random_hub = rng.random(), rng.randrange(HUBS)
            shape = rng.choices(("single", "batch", "multi"), (6, 2.5, 1.5))[0]
            count = rng.randint(2, 4) if shape == "batch" else 1
            items, bodies = [], []
            for index in range(count):
                multi = shape == "multi" or (shape == "batch" and rng.random() < 0.3)
                channels = _pick_channels(rng, 2 if multi else 1)
                event = "tick" if rng.random() < 0.2 else "message"
                item = Item(f"{self.plan.seed}-{name}-{number}-{index}", channels, event)
                body: dict[str, object] = {"data": item.token, "channels": list(channels)}
                if event != "message":
                    body["event"] = event
                items.append(item)
                bodies.append(body)
            instance = self.plan.home(items[0].channels[0]) if home_draw < publisher.home_share else random_hub
            # Requests overlap, as from many clients: one stuck on a stalled hub does not
            # hold back the others (at most MAX_IN_FLIGHT per publisher).
            await in_flight.acquire()
            payload: object = bodies if shape == "batch" else bodies[0]
            task = asyncio.create_task(self.publish_once(payload, instance, items, name))
            running.add(task)
            task.add_done_callback(lambda done: (running.discard(done), in_flight.release()))
            await asyncio.sleep(rng.uniform(0.03, 0.12))

    def _http_error(self, who: str, instance: int, status: int, body: str) -> None:
        self.record.http_errors.append(HttpError(time.monotonic(), who, instance, status, body))


def _pick_channels(rng: random.Random, count: int) -> tuple[str, ...]:
    if count == 2 and rng.random() < 0.3:
        return ("{g}a", "{g}b")  # one partition on a Redis Cluster
    chosen: list[str] = []
    while len(chosen) < count:
        channel = rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0]
        if channel not in chosen:
            chosen.append(channel)
    return tuple(sorted(chosen))


async def _short_body(response: aiohttp.ClientResponse) -> str:
    with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, UnicodeDecodeError):
        async with asyncio.timeout(2):
            return (await response.content.read(500)).decode(errors="replace")
    return ""

"""Rolling upgrades (issue 24): this release beside the previous one on one Redis, both as
real ``sse-hub`` processes, the previous one extracted from this repository's history at a
pinned commit (git must hold it: a shallow clone fails here, never skips); then the refusal
beside an incompatible wire version: fake instances written into Redis, the sharded
broker, and the real release from before wire versions."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis, RedisCluster

from sse_hub.broker.redis import RedisBroker
from sse_hub.broker.redis.directory import OURS, WireVersion, announced_wire
from sse_hub.broker.sharded import ShardedClusterBroker
from sse_hub.errors import BrokerUnavailable
from tests.support.brokers import broker_section, draft
from tests.support.http import broadcast, client_id_of, open_stream
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port, start_hub, stop_hubs
from tests.support.redis_cluster import Cluster
from tests.support.settings import make_settings
from tests.support.sse_client import Event, EventStream
from tests.support.waiting import eventually

# The release this one must work beside on one Redis during a rollout (wire version 1,
# docs/upgrades.md): today's main when wire versions began. Move it to the last release's
# commit at each release, and add a row to the table in docs/upgrades.md.
PREVIOUS_RELEASE = "ab801b8"
# The last release before routing by interest (wire version 0, one pub/sub channel for
# every message): it cannot share a Redis with this one, which must say so.
BEFORE_WIRE_VERSIONS = "d70e888"

HubFactory = Callable[..., HubProcess]
ReleaseFactory = Callable[[str, dict[str, str]], HubProcess]
TIMEOUT = 5
# Presence is refreshed every 2 s: a verdict on another instance takes up to that.
UPKEEP_TIMEOUT = 10


@pytest.fixture(scope="module")
def release_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``release_tree(commit)``: the package at ``commit``, extracted from git history into a
    directory (once per module)."""
    trees: dict[str, Path] = {}

    def extract(commit: str) -> Path:
        if commit in trees:
            return trees[commit]
        found = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
            capture_output=True,
            check=False,
        )
        if found.returncode != 0:
            pytest.fail(
                f"commit {commit} (a release these tests run beside this one) is not in this clone of"
                f" {ROOT}: fetch the full history (`git fetch --unshallow`; in GitHub Actions,"
                " actions/checkout with `fetch-depth: 0`)",
                pytrace=False,
            )
        directory = tmp_path_factory.mktemp(f"release-{commit}")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "sse_hub"], capture_output=True)
        assert archive.returncode == 0, archive.stderr.decode(errors="replace")
        subprocess.run(["tar", "-x", "-C", str(directory)], input=archive.stdout, check=True)
        trees[commit] = directory
        return directory

    return extract


@pytest.fixture
def release_hub(release_tree: Callable[[str], Path], tmp_path: Path) -> Iterator[ReleaseFactory]:
    """``hub = release_hub(commit, env)``: ``sse-hub serve`` of the release at ``commit``,
    with this venv's Python; its directory comes first on the import path (cwd and
    PYTHONPATH). Every process is stopped at teardown."""
    started: list[HubProcess] = []

    def start(commit: str, env: dict[str, str]) -> HubProcess:
        tree = release_tree(commit)
        port = free_port()
        hub = start_hub(tmp_path / f"{commit}-{port}.log", port, {**env, "PYTHONPATH": str(tree)}, tree)
        started.append(hub)
        return hub

    yield start
    stop_hubs(started)


@pytest.fixture
def previous_hub(release_hub: ReleaseFactory) -> HubFactory:
    """``hub = previous_hub(env)``: the previous release (``PREVIOUS_RELEASE``)."""
    return partial(release_hub, PREVIOUS_RELEASE)


@pytest.fixture
def env(redis_server: str, prefix: str) -> dict[str, str]:
    return {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": prefix,
    }


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session:
        yield session


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.json()


def status_is(session: aiohttp.ClientSession, url: str, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        async with session.get(url) as response:
            return response.status == status

    return check


async def instance_of(session: aiohttp.ClientSession, hub: HubProcess) -> str:
    return str((await get_json(session, f"{hub.url}/stats"))["instance"])


async def check_releases(
    session: aiohttp.ClientSession, redis: Redis, prefix: str, previous: HubProcess, current: HubProcess
) -> None:
    """The previous release's code is what runs there: its summary in Redis announces no
    wire version (ab801b8 predates them), this release's starts with its announcement."""
    summaries: dict[str, bytes] = {}
    for hub in (previous, current):
        key = f"{prefix}:instance:{await instance_of(session, hub)}"

        async def stored(key: str = key, url: str = hub.url) -> bool:
            summary = await redis.get(key)
            if isinstance(summary, bytes):
                summaries[url] = summary
            return summary is not None

        await eventually(stored)
    assert b"wire_version" not in summaries[previous.url], "the previous release's code runs there"
    assert summaries[current.url].startswith(b'{"wire_version":%d,' % OURS.version)


async def start_pair(
    previous_hub: HubFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> tuple[HubProcess, HubProcess]:
    """The previous release, then this one beside it (the order of a rollout)."""
    previous = previous_hub(env)
    current = hub_process(env=env)
    await check_releases(session, redis, prefix, previous, current)
    return previous, current


def seen(events: list[Event]) -> list[tuple[str | None, str, str]]:
    return [(event.id, event.event, event.data) for event in events]


async def expect_exactly(stream: EventStream, expected: list[tuple[str | None, str, str]]) -> None:
    """The stream's next events are ``expected``, with no reset before them."""
    assert seen(await stream.take(len(expected))) == expected


# -- messages cross both ways -------------------------------------------------------------


async def test_channel_global_and_batch_messages_cross_between_the_previous_release_and_this_one(
    previous_hub: HubFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> None:
    previous, current = await start_pair(previous_hub, hub_process, env, session, redis, prefix)
    async with (
        open_stream(session, f"{previous.url}/events/prices") as on_previous,
        open_stream(session, f"{current.url}/events/prices") as on_current,
    ):
        expected: list[tuple[str | None, str, str]] = []
        for name, publisher in (("current", current), ("previous", previous)):
            one = await broadcast(session, publisher.url, {"channel": "prices", "data": f"from {name}"})
            everyone = await broadcast(session, publisher.url, {"event": "notice", "data": f"global from {name}"})
            batch = await broadcast(session, publisher.url, [{"channel": "prices", "data": n} for n in range(3)])
            await broadcast(session, publisher.url, {"channel": "elsewhere", "data": "for nobody here"})
            assert everyone["channels"] == ["*"]
            expected += [(one["id"], "message", f"from {name}"), (everyone["id"], "notice", f"global from {name}")]
            expected += [(receipt["id"], "message", str(n)) for n, receipt in enumerate(batch)]
        last = await broadcast(session, previous.url, {"channel": "prices", "data": "last"})
        expected.append((last["id"], "message", "last"))
        for stream in (on_previous, on_current):
            # Every one once, in publish order, and nothing in between (the last one is next).
            await expect_exactly(stream, expected)
    ids = [int(event_id or 0) for event_id, _, _ in expected]
    assert ids == sorted(ids)


async def test_a_direct_message_reaches_a_client_of_the_other_release_both_ways(
    previous_hub: HubFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> None:
    previous, current = await start_pair(previous_hub, hub_process, env, session, redis, prefix)
    for holder, sender in ((previous, current), (current, previous)):
        async with open_stream(session, f"{holder.url}/events/inbox") as stream:
            client_id = client_id_of(stream)

            async def delivered(sender: HubProcess = sender, client_id: str = client_id) -> bool:
                # The directory write is batched off the connect path: poll until it landed.
                body = {"client_id": client_id, "data": "psst"}
                async with session.post(f"{sender.url}/broadcast", json=body) as response:
                    assert response.status in (202, 404), await response.text()
                    return response.status == 202

            await eventually(delivered)
            assert (await stream.next()).data == "psst"


async def test_a_stream_resumes_on_the_other_release_with_exactly_what_it_missed(
    previous_hub: HubFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> None:
    # The previous release alone first, with history, as before a rollout.
    previous = previous_hub(env)
    async with open_stream(session, f"{previous.url}/events/news") as stream:
        first = await broadcast(session, previous.url, {"channel": "news", "data": "seen on previous"})
        assert (await stream.next()).id == first["id"]
    current = hub_process(env=env)  # the rollout's first new instance joins
    await check_releases(session, redis, prefix, previous, current)
    last_id = first["id"]
    for publishers, resume_on in (((previous, current), current), ((current, previous), previous)):
        missed: list[tuple[str | None, str, str]] = []
        for n, publisher in enumerate((*publishers, *publishers)):
            body: dict[str, object] = {"channel": "news", "data": f"missed {n}"} if n != 2 else {"data": "global"}
            receipt = await broadcast(session, publisher.url, body)
            missed.append((receipt["id"], "message", str(body["data"])))
            await broadcast(session, publisher.url, {"channel": "other", "data": "not for this stream"})
        headers = {"Last-Event-ID": str(last_id)}
        async with open_stream(session, f"{resume_on.url}/events/news", headers=headers) as stream:
            await expect_exactly(stream, missed)
            # Then live, from the other release: the next event, no gap and no duplicate.
            live = await broadcast(session, publishers[0].url, {"channel": "news", "data": "live"})
            await expect_exactly(stream, [(live["id"], "message", "live")])
        last_id = live["id"]


async def test_cluster_stats_on_either_release_list_both_instances(
    previous_hub: HubFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> None:
    previous, current = await start_pair(previous_hub, hub_process, env, session, redis, prefix)
    instances = {await instance_of(session, hub) for hub in (previous, current)}
    async with contextlib.AsyncExitStack() as stack:
        for hub, channel in ((previous, "x"), (current, "x"), (current, "y")):
            await stack.enter_async_context(open_stream(session, f"{hub.url}/events/{channel}"))
        for hub in (previous, current):

            async def lists_both(hub: HubProcess = hub) -> bool:
                stats = await get_json(session, f"{hub.url}/stats?scope=cluster")
                listed = {summary["instance"] for summary in stats["instances"]}
                totals = {"instances": 2, "total_clients": 3, "channels": {"x": 2, "y": 1}}
                return listed == instances and stats["cluster"] == totals

            await eventually(lists_both, timeout=UPKEEP_TIMEOUT)


# -- an incompatible wire version ---------------------------------------------------------


async def register_fake_instance(redis: Redis | RedisCluster, prefix: str, instance: str, wire: WireVersion) -> None:
    """A live instance announcing ``wire``, written as the presence script writes one
    (member of ``P:instances`` scored by its expiry in ms, summary under
    ``P:instance:{id}``), for a minute: longer than any test. (This machine's clock is
    Redis's: the same host.)"""
    ttl_ms = 60_000
    summary = {
        "wire_version": wire.version,
        "wire_compatible": sorted(wire.compatible),
        "instance": instance,
        "started_at": "2026-12-01T00:00:00.000Z",
        "total_clients": 0,
        "channels": {},
    }
    # The summary first: the instance is live (and judged) from the ZADD on.
    await redis.set(f"{prefix}:instance:{instance}", json.dumps(summary, separators=(",", ":")), px=ttl_ms)
    await redis.zadd(f"{prefix}:instances", {instance: int(time.time() * 1000) + ttl_ms})


async def remove_fake_instance(redis: Redis | RedisCluster, prefix: str, instance: str) -> None:
    await redis.zrem(f"{prefix}:instances", instance)
    await redis.delete(f"{prefix}:instance:{instance}")


def log_lines(hub: HubProcess, *fragments: str) -> list[str]:
    return [line for line in hub.log().splitlines() if all(fragment in line for fragment in fragments)]


async def presence_refreshes(redis: Redis, prefix: str, instance: str, count: int) -> None:
    """Wait for ``count`` more presence refreshes of ``instance`` (each moves its expiry)."""
    scores: set[float | None] = {await redis.zscore(f"{prefix}:instances", instance)}

    async def refreshed() -> bool:
        scores.add(await redis.zscore(f"{prefix}:instances", instance))
        return len(scores) > count

    await eventually(refreshed, timeout=UPKEEP_TIMEOUT)


async def test_this_release_refuses_to_serve_beside_an_older_incompatible_wire_version_until_it_leaves(
    hub_process: HubFactory, env: dict[str, str], session: aiohttp.ClientSession, redis: Redis, prefix: str
) -> None:
    # Version 0 stands for an older format this release dropped: the newer side refuses.
    hub = hub_process(env=env)
    instance = await instance_of(session, hub)
    assert await status_is(session, f"{hub.url}/readyz", 200)()
    async with open_stream(session, f"{hub.url}/events/news") as stream:
        await register_fake_instance(redis, prefix, "fake-v0", WireVersion(0, frozenset({0})))
        await eventually(status_is(session, f"{hub.url}/readyz", 503), timeout=UPKEEP_TIMEOUT)
        # The streams it had end (they resume elsewhere), rather than miss what the other
        # release publishes.
        assert "data:" not in await stream.read_until_closed(TIMEOUT)
    async with session.post(f"{hub.url}/broadcast", json={"channel": "news", "data": "refused"}) as response:
        assert response.status == 503
        assert (await response.json())["error"] == "broker_unavailable"
    async with session.get(f"{hub.url}/events/news") as response:
        assert "retry later" in await response.text(), "a new stream is asked to come back later"
    await presence_refreshes(redis, prefix, instance, 2)
    warnings = log_lines(hub, "WARNING", f"instance=fake-v0 speaks wire version 0, this instance {OURS.version}")
    assert len(warnings) == 1, "one line when it came, none at each recheck"
    assert f"Finish or roll back the rollout: versions 0 and {OURS.version} cannot share a Redis" in warnings[0]
    assert "use another broker.prefix for the new version" in warnings[0]

    await remove_fake_instance(redis, prefix, "fake-v0")
    await eventually(status_is(session, f"{hub.url}/readyz", 200), timeout=UPKEEP_TIMEOUT)
    assert log_lines(hub, "serving again")
    async with open_stream(session, f"{hub.url}/events/news") as stream:
        receipt = await broadcast(session, hub.url, {"channel": "news", "data": "back"})
        assert (await stream.next()).id == receipt["id"]


async def test_a_newer_incompatible_instance_is_reported_and_this_release_keeps_serving(
    hub_process: HubFactory, env: dict[str, str], session: aiohttp.ClientSession, redis: Redis, prefix: str
) -> None:
    hub = hub_process(env=env)
    # Both at once: one presence refresh judges them together.
    newer = OURS.version + 1
    await register_fake_instance(redis, prefix, "fake-next", WireVersion(newer, frozenset({OURS.version, newer})))
    await register_fake_instance(redis, prefix, "fake-v99", WireVersion(99, frozenset({99})))

    async def reported() -> bool:
        line = f"instance=fake-v99 speaks wire version 99, this instance {OURS.version}"
        return bool(log_lines(hub, "WARNING", line))

    await eventually(reported, timeout=UPKEEP_TIMEOUT)
    [warning] = log_lines(hub, "instance=fake-v99")
    assert "that instance refuses to serve while this one is live" in warning
    assert not log_lines(hub, "fake-next"), "the next version lists this one as compatible"
    assert await status_is(session, f"{hub.url}/readyz", 200)()
    await broadcast(session, hub.url, {"channel": "news", "data": "still serving"})


async def test_the_sharded_cluster_broker_refuses_beside_an_older_incompatible_wire_version_too(
    redis_cluster: Cluster,
    prefix: str,
) -> None:
    # The same directory announces and judges there, under the hash tag {prefix}.
    ended: list[None] = []
    broker = ShardedClusterBroker(
        make_settings(broker=broker_section("sharded", redis_cluster.url, prefix)), "sharded-current"
    )
    cluster = RedisCluster.from_url(redis_cluster.url)
    try:
        await broker.start(lambda message: None, lambda: ended.append(None))
        assert broker.connected
        await broker.attach(["held"])  # a stream from before the refusal
        await register_fake_instance(cluster, f"{{{prefix}}}", "fake-v0", WireVersion(0, frozenset({0})))
        await broker.directory.refresh_presence()
        assert not broker.connected and ended == [None]
        with pytest.raises(BrokerUnavailable, match="wire version 0"):
            await broker.publish([draft("news")])
        with pytest.raises(BrokerUnavailable):
            await broker.attach(["news"])
        broker.detach(["news"])
        with pytest.raises(BrokerUnavailable):
            await broker.attach(["held"])
        broker.detach(["held"])  # the refused stream's release (the contract: also when attach raised)
        assert broker.subscriptions.attached("held") == 1, "the earlier stream's hold is still there"
        await remove_fake_instance(cluster, f"{{{prefix}}}", "fake-v0")
        await broker.directory.refresh_presence()
        assert broker.connected
        await broker.attach(["news"])
        assert len(await broker.publish([draft("news")])) == 1
    finally:
        await broker.stop()
        await cluster.aclose()


async def test_a_refused_attach_takes_its_hold_so_its_detach_leaves_other_streams_subscribed(
    redis_server: str, redis: Redis, prefix: str
) -> None:
    broker = RedisBroker(make_settings(broker=broker_section("redis", redis_server, prefix)), "current")
    try:
        await broker.start(lambda message: None)
        await broker.attach(["held"])  # a stream from before the refusal
        await register_fake_instance(redis, prefix, "fake-v0", WireVersion(0, frozenset({0})))
        await broker.directory.refresh_presence()
        with pytest.raises(BrokerUnavailable, match="wire version 0"):
            await broker.attach(["held"])
        broker.detach(["held"])  # the refused stream's release (the contract: also when attach raised)
        assert broker.listener.attached("held") == 1, "the earlier stream's hold is still there"
    finally:
        await broker.stop()


async def test_this_release_refuses_to_serve_beside_a_release_from_before_wire_versions(
    release_hub: ReleaseFactory,
    hub_process: HubFactory,
    env: dict[str, str],
    session: aiohttp.ClientSession,
    redis: Redis,
    prefix: str,
) -> None:
    # d70e888 and ab801b8 exchanged nothing, silently (issue 24); this release says why.
    hub = hub_process(env=env)
    assert await status_is(session, f"{hub.url}/readyz", 200)()
    before = release_hub(BEFORE_WIRE_VERSIONS, env)
    # Its code is what runs there: it listens on the one channel of wire version 0.
    assert (await redis.pubsub_numsub(f"{prefix}:messages")) == [(f"{prefix}:messages".encode(), 1)]
    await eventually(status_is(session, f"{hub.url}/readyz", 503), timeout=UPKEEP_TIMEOUT)
    ours = f"speaks wire version 0, this instance {OURS.version}"
    [warning] = log_lines(hub, "WARNING", "a release before ab801b8", ours)
    assert "use another broker.prefix for the new version" in warning
    await broadcast(session, hub.url, {"channel": "news", "data": "refused"}, expect=503)
    assert await status_is(session, f"{before.url}/readyz", 200)(), "the older release keeps serving"

    assert before.stop() == 0
    await eventually(status_is(session, f"{hub.url}/readyz", 200), timeout=UPKEEP_TIMEOUT)
    await broadcast(session, hub.url, {"channel": "news", "data": "back"})


@pytest.mark.parametrize(
    ("head", "version", "compatible"),
    [
        (b'{"instance":"i-1","started_at":"2026-12-01T00:00:00.000Z"', 1, {1}),  # ab801b8: none announced
        (b'{"wire_version":1,"wire_compatible":[1],"instance":"i-1"', 1, {1}),
        (b'{"wire_version":3,"wire_compatible":[1,2,3],"instance":"i-1"', 3, {1, 2, 3}),
        (b'{"wire_version":3,"wire_compatible":[1,2', 3, {3}),  # cut off by the head's length
        (b'{"wire_version":7,"instance":"i-1"', 7, {7}),
        (b'{"instance":"x","wire_version":9}', 1, {1}),  # only the head announces
    ],
)
def test_the_wire_version_a_summary_announces(head: bytes, version: int, compatible: set[int]) -> None:
    assert announced_wire(head) == WireVersion(version, frozenset(compatible))


@pytest.mark.parametrize(
    ("ours", "theirs", "together"),
    [
        (WireVersion(1, frozenset({1})), WireVersion(1, frozenset({1})), True),
        (WireVersion(1, frozenset({1})), WireVersion(2, frozenset({1, 2})), True),  # the newer one knows
        (WireVersion(2, frozenset({1, 2})), WireVersion(1, frozenset({1})), True),
        (WireVersion(1, frozenset({1})), WireVersion(2, frozenset({2})), False),
        (WireVersion(2, frozenset({2})), WireVersion(1, frozenset({1})), False),
    ],
)
def test_two_wire_versions_work_together_when_either_lists_the_other(
    ours: WireVersion, theirs: WireVersion, together: bool
) -> None:
    assert ours.works_beside(theirs) is together
    assert theirs.works_beside(ours) is together

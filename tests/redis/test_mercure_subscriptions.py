"""Mercure's active subscriptions: the updates and the API, on memory and across two Redis
instances (a subscriber on ``a``, the watcher and the API asked on ``b``).

No polling: the watcher's connect update is the signal that a subscription is stored
cluster-wide (the hub writes the directory before it publishes the update), and its
disconnect update that it is gone.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlencode

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate as validate_openapi

from sse_hub.web.app import routes
from sse_hub.web.openapi.spec import build_openapi
from tests.redis.test_mercure_endpoint import MERCURE, PUBLISHER, SECRET, legacy_token
from tests.support.brokers import broker_section
from tests.support.http import HubClientFactory
from tests.support.plugin import HubsFactory
from tests.support.redis_proxy import redis_proxy
from tests.support.settings import make_settings
from tests.support.sse_client import EventStream

HUB = "/.well-known/mercure"
SUBSCRIPTIONS = f"{HUB}/subscriptions"
TEMPLATE = SUBSCRIPTIONS + "{/topic}{/subscriber}"
BOOK = "https://example.com/books/1"
OTHER = "https://example.com/other"
MARKER = "https://example.com/marker"
READER = legacy_token(subscribe=[TEMPLATE, SUBSCRIPTIONS, SUBSCRIPTIONS + "{/topic}", MARKER])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Hubs:
    a: TestClient[Any, Any]
    b: TestClient[Any, Any]

    @contextlib.asynccontextmanager
    async def subscribe(
        self, on: TestClient[Any, Any], query: list[tuple[str, str]], headers: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[EventStream, aiohttp.ClientResponse]]:
        response = await on.get(
            f"{HUB}?{urlencode(query)}", headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=30)
        )
        try:
            assert response.status == 200, await response.text()
            yield EventStream(response), response
        finally:
            response.close()

    def watch(self, *, last_event_id: str | None = None) -> contextlib.AbstractAsyncContextManager[Any]:
        """A subscriber of every subscription update (and the marker topic), on ``b``."""
        query = [("topic", TEMPLATE), ("topic", MARKER)]
        if last_event_id is not None:
            query.append(("lastEventID", last_event_id))
        return self.subscribe(self.b, query, bearer(READER))

    async def publish_marker(self) -> None:
        form = urlencode([("topic", MARKER), ("data", "marker")])
        headers = {**bearer(PUBLISHER), "Content-Type": "application/x-www-form-urlencoded"}
        response = await self.a.post(HUB, data=form, headers=headers)
        assert response.status == 200, await response.text()

    async def get(self, path: str, token: str | None = READER, status: int = 200) -> Any:
        response = await self.b.get(path, headers=bearer(token) if token else None)
        assert response.status == status, await response.text()
        if status != 200:
            return None
        assert response.headers["Content-Type"].startswith("application/ld+json")
        return await response.json()


async def updates(watcher: EventStream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` subscription updates, past those of watchers (their own
    included: a stream is live before its connect update is published)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        update = (await watcher.next()).json()
        assert isinstance(update, dict)
        if update["topic"] not in (TEMPLATE, MARKER):
            found.append(update)
    return found


async def subscribers(hubs: Hubs) -> set[str]:
    return {item["subscriber"] for item in (await hubs.get(SUBSCRIPTIONS))["subscriptions"]}


def subscription_path(topic: str, subscriber: str | None = None) -> str:
    path = f"{SUBSCRIPTIONS}/{quote(topic, safe='')}"
    return path if subscriber is None else f"{path}/{quote(subscriber, safe='')}"


def listed(document: dict[str, Any]) -> set[tuple[str, str, bool]]:
    return {(item["topic"], item["subscriber"], item["active"]) for item in document["subscriptions"]}


@pytest.fixture(params=["memory", "redis"])
async def hubs(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Hubs:
    return Hubs(*await start_hubs(request.param, mercure={**MERCURE, "subscriptions": True}))


async def test_a_subscriber_is_announced_and_listed_on_the_other_instance_until_it_leaves(hubs: Hubs) -> None:
    payload = {"user": "alice"}
    token = jwt.encode({"mercure": {"subscribe": [BOOK], "payload": payload}}, SECRET, algorithm="HS256")
    async with hubs.watch() as (watcher, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK), ("topic", OTHER)], bearer(token)):
            connects = await updates(watcher, 2)
            subscriber = connects[0]["subscriber"]
            assert {item["topic"] for item in connects} == {BOOK, OTHER}
            assert connects[0] == {
                "@context": "https://mercure.rocks/",
                "id": subscription_path(connects[0]["topic"], subscriber),
                "type": "Subscription",
                "topic": connects[0]["topic"],
                "subscriber": subscriber,
                "active": True,
                "payload": payload,
            }
            # Stored before announced: listed at once on the other instance.
            everything = await hubs.get(SUBSCRIPTIONS)
            assert {(BOOK, subscriber, True), (OTHER, subscriber, True)} <= listed(everything)
            assert everything["@context"] == "https://mercure.rocks/"
            assert (everything["id"], everything["type"]) == (SUBSCRIPTIONS, "Subscriptions")
            for_book = await hubs.get(subscription_path(BOOK))
            assert listed(for_book) == {(BOOK, subscriber, True)}
            one = await hubs.get(subscription_path(BOOK, subscriber))
            assert (one["id"], one["type"], one["payload"]) == (
                subscription_path(BOOK, subscriber),
                "Subscription",
                payload,
            )
            assert one["lastEventID"].startswith("#")
        disconnects = await updates(watcher, 2)
    assert {(item["topic"], item["active"]) for item in disconnects} == {(BOOK, False), (OTHER, False)}
    assert all(item["subscriber"] == subscriber for item in disconnects)
    # Removed before the disconnect update was published: gone from every form at once.
    assert subscriber not in {item["subscriber"] for item in (await hubs.get(SUBSCRIPTIONS))["subscriptions"]}
    await hubs.get(subscription_path(BOOK, subscriber), status=404)


async def test_a_subscriber_is_stored_before_each_update_even_when_its_writes_are_slow(
    hub_client: HubClientFactory, redis_server: str, prefix: str
) -> None:
    mercure = {**MERCURE, "subscriptions": True}
    async with redis_proxy(redis_server) as proxy:
        # Instance a's directory writes lag (its reads are scripts, its publishes too).
        for command in (b"HSET", b"HDEL"):
            proxy.slow_writes(command, 0.3)
        slow = await hub_client(broker=broker_section("redis", proxy.url, prefix), mercure=mercure)
        hubs = Hubs(slow, await hub_client(broker=broker_section("redis", redis_server, prefix), mercure=mercure))
        async with hubs.watch() as (watcher, _):
            async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
                [update] = await updates(watcher, 1)
                assert update["subscriber"] in await subscribers(hubs)
            await updates(watcher, 1)
            assert update["subscriber"] not in await subscribers(hubs)


async def test_an_instance_that_shuts_down_announces_its_subscribers_leaving(start_hubs: HubsFactory) -> None:
    hubs = Hubs(*await start_hubs("redis", mercure={**MERCURE, "subscriptions": True}))
    async with hubs.watch() as (watcher, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
            [connect] = await updates(watcher, 1)
            await hubs.a.close()  # the drain ends the stream, then the hub stops
        [disconnect] = await updates(watcher, 1)
    assert (disconnect["subscriber"], disconnect["active"]) == (connect["subscriber"], False)


async def test_subscription_updates_are_private(hubs: Hubs) -> None:
    async with (
        hubs.watch() as (watcher, _),
        hubs.subscribe(hubs.b, [("topic", TEMPLATE), ("topic", MARKER)]) as (anonymous, _),
    ):
        async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
            await updates(watcher, 1)  # the connect update was published
        await updates(watcher, 1)  # and the disconnect
        await hubs.publish_marker()
        assert (await anonymous.next()).data == "marker"


async def test_reading_needs_a_token_whose_selectors_match_the_resource(hubs: Hubs) -> None:
    only_book = legacy_token(subscribe=[subscription_path(BOOK), subscription_path(BOOK) + "{/subscriber}"])
    async with hubs.watch() as (watcher, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK), ("topic", OTHER)]):
            [update] = await updates(watcher, 1)
            subscriber = update["subscriber"]
            await hubs.get(SUBSCRIPTIONS, token=None, status=401)  # even with anonymous on
            await hubs.get(SUBSCRIPTIONS, token=legacy_token(subscribe=[BOOK]), status=403)
            await hubs.get(SUBSCRIPTIONS, token="not.a.token", status=401)
            await hubs.get(SUBSCRIPTIONS, token=only_book, status=403)
            await hubs.get(subscription_path(OTHER), token=only_book, status=403)
            assert listed(await hubs.get(subscription_path(BOOK), token=only_book)) == {(BOOK, subscriber, True)}
            await hubs.get(subscription_path(BOOK, subscriber), token=only_book)
            await hubs.get(subscription_path(OTHER, subscriber), token=only_book, status=403)
            await hubs.get(subscription_path(MARKER, subscriber), status=404)  # not its topic
            await hubs.get(subscription_path(BOOK, "urn:uuid:unknown"), status=404)
            for limit in ("0", "1001", "x", "9" * 5000):
                await hubs.get(f"{SUBSCRIPTIONS}?limit={limit}", status=400)


async def test_a_list_comes_in_pages_that_next_walks_to_the_end(hubs: Hubs) -> None:
    async with hubs.watch() as (watcher, _), hubs.subscribe(hubs.a, [("topic", BOOK)]):
        async with hubs.subscribe(hubs.a, [("topic", OTHER)]):
            expected = {update["subscriber"] for update in await updates(watcher, 2)}
            seen: list[str] = []
            page = await hubs.get(f"{SUBSCRIPTIONS}?limit=1")
            while True:
                seen += [item["id"] for item in page["subscriptions"]]
                if "next" not in page:
                    break
                page = await hubs.get(page["next"])
    assert len(seen) == len(set(seen)) == 4  # each subscription once; the watcher has two
    assert expected <= {unquote(subscription_id.rsplit("/", 1)[1]) for subscription_id in seen}


async def test_listing_then_subscribing_from_its_last_event_id_leaves_no_gap(hubs: Hubs) -> None:
    async with hubs.watch() as (first_watcher, _), hubs.subscribe(hubs.a, [("topic", BOOK)]):
        [update] = await updates(first_watcher, 1)
        earlier = update["subscriber"]
        document = await hubs.get(SUBSCRIPTIONS)
        assert earlier in {item["subscriber"] for item in document["subscriptions"]}
        async with hubs.watch(last_event_id=document["lastEventID"]) as (watcher, response):
            assert response.headers["Last-Event-ID"] == document["lastEventID"]
            async with hubs.subscribe(hubs.a, [("topic", OTHER)]):
                # The next update is the new subscriber's: the listed one is not replayed.
                [update] = await updates(watcher, 1)
                assert (update["topic"], update["active"]) == (OTHER, True)


async def test_with_the_option_off_there_is_no_api_and_no_update(start_hubs: HubsFactory) -> None:
    hubs = Hubs(*await start_hubs("memory", mercure=MERCURE))
    await hubs.get(SUBSCRIPTIONS, status=404)
    await hubs.get(subscription_path(BOOK), status=404)
    async with hubs.subscribe(hubs.b, [("topic", "*")], bearer(legacy_token(subscribe=["*"]))) as (everything, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
            await hubs.publish_marker()
            assert (await everything.next()).data == "marker"


def test_the_openapi_document_lists_the_forms_of_both_protocols_when_the_option_is_on() -> None:
    settings = make_settings(mercure={**MERCURE, "subscriptions": True})
    document = build_openapi(settings, routes(settings))
    validate_openapi(document)
    paths = {
        SUBSCRIPTIONS,
        SUBSCRIPTIONS + "/{first}",
        SUBSCRIPTIONS + "/{first}/{second}",
        SUBSCRIPTIONS + "/{first}/{second}/{subscriber}",
    }
    assert paths <= set(document["paths"])
    off = make_settings(mercure=MERCURE)
    assert not paths & set(build_openapi(off, routes(off))["paths"])

"""Mercure's active subscriptions in the 1.0 form, on memory and across two Redis
instances (a subscriber on ``a``, the watcher and the API asked on ``b``): updates on
``/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`` sent as SSE
``event: mercure`` with the 1.0 JSON, and the API answering a 1.0 access token in
``application/json`` with its cursor in a ``Link`` header (docs/mercure.md, "Subscriptions").
The draft-07 form: tests/redis/test_mercure_subscriptions.py.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import jwt
import pytest

from tests.redis.test_mercure_endpoint import MERCURE, SECRET, legacy_token
from tests.redis.test_mercure_subscriptions import BOOK, HUB, OTHER, SUBSCRIPTIONS, Hubs, bearer, subscribers
from tests.support.plugin import HubsFactory
from tests.support.sse_client import EventStream

PATTERN = SUBSCRIPTIONS + "/:match_type/:match/:subscriber"
HUB_URL = "https://localhost/.well-known/mercure"  # the default public_url
LINK = re.compile(r'<(?P<hub>[^>]*)>; rel="mercure"; last-event-id="(?P<cursor>[^"]*)"')


def v1_token(*topics: tuple[str, str]) -> str:
    """A 1.0 access token granting ``subscribe`` on (match_type, match) pairs."""
    detail = {
        "type": "https://mercure.rocks/authorization-detail",
        "actions": ["subscribe"],
        "topics": [{"match": match, "match_type": match_type} for match_type, match in topics],
    }
    claims = {"aud": HUB_URL, "iss": "https://localhost", "exp": int(time.time()) + 600}
    return jwt.encode({**claims, "authorization_details": [detail]}, SECRET, headers={"typ": "at+jwt"})


V1_READER = v1_token(
    ("exact", SUBSCRIPTIONS),
    ("urlpattern", SUBSCRIPTIONS + "/:first"),
    ("urlpattern", SUBSCRIPTIONS + "/:match_type/:match"),
    ("urlpattern", PATTERN),
)


def v1_path(*parts: str) -> str:
    return "/".join([SUBSCRIPTIONS, *(quote(part, safe="") for part in parts)])


@pytest.fixture(params=["memory", "redis"])
async def hubs(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Hubs:
    return Hubs(*await start_hubs(request.param, mercure={**MERCURE, "subscriptions": True}))


@contextlib.asynccontextmanager
async def v1_watch(hubs: Hubs, last_event_id: str | None = None) -> AsyncIterator[tuple[EventStream, Any]]:
    """A 1.0 subscriber of every 1.0 subscription update, on ``b``."""
    query = [("match_urlpattern", PATTERN)] + ([("last_event_id", last_event_id)] if last_event_id else [])
    async with hubs.subscribe(hubs.b, query, bearer(v1_token(("urlpattern", PATTERN)))) as opened:
        yield opened


async def v1_updates(watcher: EventStream, count: int) -> list[dict[str, Any]]:
    """The next ``count`` 1.0 updates past the watchers' own (their selector is ``PATTERN``)."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        event = await watcher.next()
        assert event.event == "mercure", event
        update = event.json()
        assert isinstance(update, dict)
        if update["match"] != PATTERN:
            found.append(update)
    return found


async def v1_get(hubs: Hubs, path: str, status: int = 200) -> tuple[Any, str]:
    """The document and the ``Link`` cursor of a 1.0 read on ``b``."""
    response = await hubs.b.get(path, headers=bearer(V1_READER), timeout=aiohttp.ClientTimeout(total=10))
    assert response.status == status, await response.text()
    if status != 200:
        return None, ""
    assert response.headers["Content-Type"].startswith("application/json")
    link = LINK.fullmatch(response.headers["Link"])
    assert link and link["hub"] == HUB_URL, response.headers["Link"]
    return await response.json(), link["cursor"]


async def test_a_1_0_watcher_gets_1_0_updates_for_subscribers_of_either_protocol(hubs: Hubs) -> None:
    payload = {"user": "alice"}
    token = v1_token(("exact", BOOK))
    claims = jwt.decode(token, options={"verify_signature": False})
    claims["authorization_details"][0]["payload"] = payload
    token = jwt.encode(claims, SECRET, headers={"typ": "at+jwt"})
    async with v1_watch(hubs) as (watcher, _):
        async with hubs.subscribe(hubs.a, [("match", BOOK), ("match_urlpattern", "/books/:id")], bearer(token)):
            connects = await v1_updates(watcher, 2)
            subscriber = connects[0]["subscriber"]
            assert {(item["match_type"], item["match"]) for item in connects} == {
                ("exact", BOOK),
                ("urlpattern", "/books/:id"),
            }
            exact = next(item for item in connects if item["match_type"] == "exact")
            assert exact == {
                "id": v1_path("exact", BOOK, subscriber),
                "type": "subscription",
                "match_type": "exact",
                "match": BOOK,
                "subscriber": subscriber,
                "active": True,
                "payload": payload,
            }
        disconnects = await v1_updates(watcher, 2)
        assert {(item["subscriber"], item["active"]) for item in disconnects} == {(subscriber, False)}
        async with hubs.subscribe(hubs.a, [("topic", OTHER)]):  # a draft-07 subscriber
            [legacy] = await v1_updates(watcher, 1)
    assert (legacy["match_type"], legacy["match"], legacy["active"]) == ("topic", OTHER, True)


async def test_the_api_answers_a_1_0_token_in_json_with_a_link_cursor(hubs: Hubs) -> None:
    async with v1_watch(hubs) as (watcher, _):
        async with hubs.subscribe(hubs.a, [("match", BOOK)]), hubs.subscribe(hubs.a, [("topic", OTHER)]):
            connects = await v1_updates(watcher, 2)
            subscriber = next(item["subscriber"] for item in connects if item["match"] == BOOK)
            legacy = next(item["subscriber"] for item in connects if item["match"] == OTHER)
            everything, cursor = await v1_get(hubs, SUBSCRIPTIONS)
            assert cursor.startswith("#") and "lastEventID" not in everything and "@context" not in everything
            assert (everything["id"], everything["type"]) == (SUBSCRIPTIONS, "Subscriptions")
            found = {(item["match_type"], item["match"], item["subscriber"]) for item in everything["subscriptions"]}
            assert {("exact", BOOK, subscriber), ("topic", OTHER, legacy)} <= found
            for_book, _ = await v1_get(hubs, v1_path("exact", BOOK))
            assert [(item["match"], item["subscriber"]) for item in for_book["subscriptions"]] == [(BOOK, subscriber)]
            assert (await v1_get(hubs, v1_path("urlpattern", BOOK)))[0]["subscriptions"] == []
            one, _ = await v1_get(hubs, v1_path("exact", BOOK, subscriber))
            assert one == next(item for item in connects if item["match"] == BOOK)
            await v1_get(hubs, v1_path("urlpattern", BOOK, subscriber), status=404)
            await v1_get(hubs, v1_path(BOOK), status=404)  # the draft-07 form's path
            # A draft-07 token reads the draft-07 form: the 1.0 single path is not one.
            await hubs.get(v1_path("exact", BOOK, subscriber), token=legacy_token(subscribe=["*"]), status=404)
        await v1_updates(watcher, 2)
    assert subscriber not in await subscribers(hubs)
    await v1_get(hubs, v1_path("exact", BOOK, subscriber), status=404)


async def test_listing_then_subscribing_from_the_link_cursor_leaves_no_gap(hubs: Hubs) -> None:
    async with v1_watch(hubs) as (first_watcher, _), hubs.subscribe(hubs.a, [("match", BOOK)]):
        await v1_updates(first_watcher, 1)
        document, cursor = await v1_get(hubs, SUBSCRIPTIONS)
        assert BOOK in {item["match"] for item in document["subscriptions"]}
        async with v1_watch(hubs, last_event_id=cursor) as (watcher, response):
            assert response.headers["Mercure-Last-Event-ID"] == cursor
            async with hubs.subscribe(hubs.a, [("match", OTHER)]):
                [update] = await v1_updates(watcher, 1)
                assert (update["match"], update["active"]) == (OTHER, True)


async def test_1_0_subscription_updates_are_private(hubs: Hubs) -> None:
    marker = "https://example.com/marker"
    query = urlencode([("match_urlpattern", PATTERN), ("match", marker)])
    async with v1_watch(hubs) as (watcher, _):
        response = await hubs.b.get(f"{HUB}?{query}", timeout=aiohttp.ClientTimeout(total=None, sock_read=30))
        try:
            anonymous = EventStream(response)
            async with hubs.subscribe(hubs.a, [("match", BOOK)]):
                await v1_updates(watcher, 1)
            await v1_updates(watcher, 1)
            form = urlencode([("topic", marker), ("data", "marker")])
            await hubs.a.post(HUB, data=form, headers={**bearer(PUBLISHER), "Content-Type": FORM})
            assert (await anonymous.next()).data == "marker"
        finally:
            response.close()


FORM = "application/x-www-form-urlencoded"
PUBLISHER = jwt.encode({"mercure": {"publish": ["*"]}}, SECRET)

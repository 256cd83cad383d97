"""Mercure's active subscriptions on Redis Cluster, both modes (``cluster_mode: sharded``
and ``one-slot``), on a real 3-master cluster: a subscriber on ``a`` is listed by the API
on ``b``, and its connect and disconnect updates reach a watcher on ``b`` (the full set of
cases, on memory and Redis: tests/redis/test_mercure_subscriptions.py).

What differs there: the subscription updates are numbered by the feed channel's own
positions (``#<seq>.<epoch>``), so the API's ``lastEventID`` must be such a position, a
cursor that resumes exactly after it, and so must the 1.0 form's ``Link`` cursor.
"""

from __future__ import annotations

import re

import pytest

from tests.redis.test_mercure_endpoint import MERCURE
from tests.redis.test_mercure_subscriptions import (
    BOOK,
    SUBSCRIPTIONS,
    Hubs,
    subscribers,
    subscription_path,
    updates,
)
from tests.redis.test_mercure_subscriptions_v1 import v1_get, v1_updates, v1_watch
from tests.support.plugin import HubsFactory

POSITION_ID = re.compile(r"#[1-9][0-9]*\.[0-9a-z]{4}")


@pytest.mark.parametrize("kind", ["sharded", "redis-cluster"])
async def test_a_subscriber_on_one_hub_is_listed_and_announced_on_the_other_until_it_leaves(
    start_hubs: HubsFactory, kind: str
) -> None:
    hubs = Hubs(*await start_hubs(kind, mercure={**MERCURE, "subscriptions": True}))
    async with hubs.watch() as (watcher, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
            [connect] = await updates(watcher, 1)
            assert (connect["topic"], connect["active"]) == (BOOK, True)
            assert connect["subscriber"] in await subscribers(hubs)
            await hubs.get(subscription_path(BOOK, connect["subscriber"]))
        [disconnect] = await updates(watcher, 1)
    assert (disconnect["subscriber"], disconnect["active"]) == (connect["subscriber"], False)
    assert connect["subscriber"] not in await subscribers(hubs)
    await hubs.get(subscription_path(BOOK, connect["subscriber"]), status=404)


async def test_the_last_event_id_of_the_list_is_a_position_that_resumes_right_after_it(
    start_hubs: HubsFactory,
) -> None:
    hubs = Hubs(*await start_hubs("sharded", mercure={**MERCURE, "subscriptions": True}))
    async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
        document = await hubs.get(SUBSCRIPTIONS)
        assert POSITION_ID.fullmatch(document["lastEventID"]), document["lastEventID"]
    async with hubs.watch(last_event_id=document["lastEventID"]) as (watcher, response):
        assert response.headers["Last-Event-ID"] == document["lastEventID"]
        [disconnect] = await updates(watcher, 1)
    assert (disconnect["topic"], disconnect["active"]) == (BOOK, False)


async def test_the_1_0_link_cursor_is_a_position_that_resumes_right_after_it(start_hubs: HubsFactory) -> None:
    hubs = Hubs(*await start_hubs("sharded", mercure={**MERCURE, "subscriptions": True}))
    async with hubs.subscribe(hubs.a, [("match", BOOK)]):
        document, cursor = await v1_get(hubs, SUBSCRIPTIONS)
        assert POSITION_ID.fullmatch(cursor), cursor
        assert BOOK in {item["match"] for item in document["subscriptions"]}
    async with v1_watch(hubs, last_event_id=cursor) as (watcher, response):
        assert response.headers["Mercure-Last-Event-ID"] == cursor
        [disconnect] = await v1_updates(watcher, 1)
    assert (disconnect["match_type"], disconnect["match"], disconnect["active"]) == ("exact", BOOK, False)

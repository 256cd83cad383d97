"""Mercure's active subscriptions on the one-slot Redis Cluster: its keys share the hash
tag, so the roster's scripts read the Mercure subscribers as on one Redis (the full set
of cases: tests/redis/test_mercure_subscriptions.py)."""

from __future__ import annotations

from tests.redis.test_mercure_endpoint import MERCURE
from tests.redis.test_mercure_subscriptions import BOOK, Hubs, subscribers, subscription_path, updates
from tests.support.plugin import HubsFactory


async def test_a_subscriber_on_one_instance_is_listed_on_the_other_until_it_leaves(start_hubs: HubsFactory) -> None:
    hubs = Hubs(*await start_hubs("redis-cluster", mercure={**MERCURE, "subscriptions": True}))
    async with hubs.watch() as (watcher, _):
        async with hubs.subscribe(hubs.a, [("topic", BOOK)]):
            [connect] = await updates(watcher, 1)
            assert connect["subscriber"] in await subscribers(hubs)
            await hubs.get(subscription_path(BOOK, connect["subscriber"]))
        [disconnect] = await updates(watcher, 1)
    assert (disconnect["subscriber"], disconnect["active"]) == (connect["subscriber"], False)
    assert connect["subscriber"] not in await subscribers(hubs)
    await hubs.get(subscription_path(BOOK, connect["subscriber"]), status=404)

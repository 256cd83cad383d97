"""A client that moves to an instance whose Redis listener lags gets no duplicate: the
stream's floor is the id it resumed from, whatever reaches the instance later."""

from __future__ import annotations

from tests.support.http import open_stream, publish
from tests.support.plugin import HubsFactory
from tests.support.redis_proxy import redis_proxy
from tests.support.waiting import wait_until

TIMEOUT = 5


async def test_a_client_resuming_on_a_lagging_instance_gets_no_message_twice(
    start_hubs: HubsFactory, redis_server: str
) -> None:
    async with redis_proxy(redis_server) as proxy:
        [hub_a] = await start_hubs("redis", 1)
        [hub_b] = await start_hubs("redis", 1, url=proxy.url)  # the same prefix, through the proxy
        async with (
            open_stream(hub_b, "/events/lag") as keeper,  # B serves the channel already
            open_stream(hub_a, "/events/lag") as first,
        ):
            proxy.hold()  # B's listener now lags behind Redis
            ids = [(await publish(hub_a, {"channel": "lag", "data": f"m{n}"}))["id"] for n in range(5)]
            assert [event.id for event in await first.take(5, TIMEOUT)] == ids
            await wait_until(lambda: proxy.held_chunks > 0, TIMEOUT)

            async with open_stream(hub_b, "/events/lag", headers={"Last-Event-ID": ids[-1]}) as moved:
                proxy.release()  # B's listener catches up: m0..m4 reach B only now
                assert [event.id for event in await keeper.take(5, TIMEOUT)] == ids
                last = (await publish(hub_a, {"channel": "lag", "data": "after"}))["id"]
                event = await moved.next(TIMEOUT)
                assert (event.id, event.data) == (last, "after"), "nothing at or below the resumed id"

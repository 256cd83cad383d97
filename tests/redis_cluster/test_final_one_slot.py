"""Streams that end on Redis Cluster in one-slot mode: the final mark is in the channel's
history stream, under the same hash tag as every other key, so the publish script that
writes it (and the check that refuses a later publish) runs on the slot's one master."""

from __future__ import annotations

import pytest

from sse_hub.errors import ChannelFinished
from sse_hub.messages.message import Draft
from tests.support.brokers import draft
from tests.support.plugin import BrokerFactory
from tests.support.waiting import wait_until


async def test_a_channel_ends_for_every_one_slot_instance_and_refuses_later_publishes(
    start_broker: BrokerFactory,
) -> None:
    a, _ = await start_broker("redis-cluster", "a")
    b, delivered = await start_broker("redis-cluster", "b")
    await b.attach(["job"])
    [ending] = await a.publish([Draft(event="message", data="done", channels=("job",), final=True)])
    assert await b.finished(["job", "other"]) == {"job": ending.id}
    with pytest.raises(ChannelFinished):
        await b.publish([draft("other"), draft("job")])
    await wait_until(lambda: bool(delivered))
    assert [(m.id, m.final) for m in delivered] == [(ending.id, True)]
    assert [(m.id, m.final) for m in (await a.history(["job", "other"], 0)).messages] == [(ending.id, True)]

"""Mercure's active subscriptions, the pure part: subscription ids that the spec's URI
template matches, subscriber IRIs read back, the documents, who may read them; and the
directory's ``Written`` waiters (resolved only by a later write that succeeded)."""

from __future__ import annotations

import asyncio

import pytest

from sse_hub.broker.redis.written import Written
from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized
from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.selectors import EMPTY, MatchType, Selector, compile_selectors
from sse_hub.mercure.subscriptions import (
    SUBSCRIPTIONS_TEMPLATE,
    authorize_reader,
    client_id_of,
    describe_subscriber,
    subscription_id,
    subscription_updates,
)
from sse_hub.messages.mercure import FEED_CHANNEL

BASE = "https://localhost/.well-known/mercure"


def grant(*selectors: str, payload: object = None) -> MercureGrant:
    subscribe = compile_selectors([Selector(MatchType.TOPIC, value) for value in selectors], BASE)
    return MercureGrant(Protocol.DRAFT_07, EMPTY, subscribe, payload)


@pytest.mark.parametrize("topic", ["https://example.com/books/1", "a b/c%d?e#f", "https://example.com/{id}", "é"])
def test_subscription_ids_encode_each_part_once_and_match_the_spec_template(topic: str) -> None:
    subscriber = describe_subscriber("c_abc-_1", [topic], None).subscriber
    found = subscription_id(topic, subscriber)
    assert found.count("/") == 5  # /.well-known/mercure/subscriptions/{topic}/{subscriber}
    assert grant(SUBSCRIPTIONS_TEMPLATE).subscribe.matches(found)


def test_subscriber_iris_name_their_client() -> None:
    described = describe_subscriber("c_x1", ["t"], None)
    assert client_id_of(described.subscriber) == "c_x1"
    assert client_id_of("urn:uuid:4a3e2b1c-0000-4000-8000-000000000000") is None
    assert client_id_of("urn:sse-hub:client:") is None


def test_updates_are_private_one_per_selector_with_the_payload() -> None:
    described = describe_subscriber("c_1", ["a", "b"], grant("*", payload={"n": 1}))
    drafts = subscription_updates(described, active=False)
    assert [draft.mercure.topics for draft in drafts if draft.mercure] == [
        (subscription_id("a", described.subscriber),),
        (subscription_id("b", described.subscriber),),
    ]
    assert all(draft.mercure and draft.mercure.private and draft.channels == (FEED_CHANNEL,) for draft in drafts)
    assert '"active":false' in drafts[0].data and '"payload":{"n":1}' in drafts[0].data


def test_reading_needs_a_grant_that_matches_the_path() -> None:
    path = subscription_id("a", "urn:x")
    with pytest.raises(MercureUnauthorized):
        authorize_reader(None, path)
    with pytest.raises(MercureForbidden):
        authorize_reader(grant("a"), path)
    authorize_reader(grant(SUBSCRIPTIONS_TEMPLATE), path)


async def test_written_waiters_resolve_after_a_later_write_succeeds() -> None:
    written = Written()

    async def fail() -> None:
        raise OSError("redis is away")

    async def succeed() -> None:
        pass

    waiter = asyncio.ensure_future(written.wait())
    assert written.wanted
    with pytest.raises(OSError):
        await written.around(fail)
    await asyncio.sleep(0)
    assert not waiter.done() and written.wanted  # handed to the next write
    later = asyncio.ensure_future(written.wait())
    await written.around(succeed)
    await asyncio.wait_for(asyncio.gather(waiter, later), timeout=1)
    assert not written.wanted

"""Mercure's active subscriptions, the pure part: subscription ids that the spec's URI
template matches, subscriber IRIs read back, the documents, who may read them; and the
directory's ``Written`` waiters (resolved only by a later write that succeeded)."""

from __future__ import annotations

import asyncio
import json

import pytest

from sse_hub.broker.redis.written import Written
from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized
from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.selectors import EMPTY, MatchType, Selector, compile_selectors
from sse_hub.mercure.subscriptions import (
    SUBSCRIPTIONS_TEMPLATE,
    SUBSCRIPTIONS_URLPATTERN,
    Subscription,
    authorize_reader,
    client_id_of,
    describe_subscriber,
    subscription_updates,
    subscriptions_of,
)
from sse_hub.messages.contract import MercureSubscriber
from sse_hub.messages.mercure import FEED_CHANNEL

BASE = "https://localhost/.well-known/mercure"


def grant(*selectors: str, payload: object = None, match_type: MatchType = MatchType.TOPIC) -> MercureGrant:
    subscribe = compile_selectors([Selector(match_type, value) for value in selectors], BASE)
    return MercureGrant(Protocol.DRAFT_07, EMPTY, subscribe, payload)


def topics(*values: str) -> list[Selector]:
    return [Selector(MatchType.TOPIC, value) for value in values]


def subscription_id(topic: str, subscriber: str) -> str:
    return Subscription(Selector(MatchType.TOPIC, topic), subscriber).draft07_id


@pytest.mark.parametrize("topic", ["https://example.com/books/1", "a b/c%d?e#f", "https://example.com/{id}", "é"])
def test_subscription_ids_encode_each_part_once_and_match_the_spec_template(topic: str) -> None:
    subscriber = describe_subscriber("c_abc-_1", topics(topic), None).subscriber
    found = subscription_id(topic, subscriber)
    assert found.count("/") == 5  # /.well-known/mercure/subscriptions/{topic}/{subscriber}
    assert grant(SUBSCRIPTIONS_TEMPLATE).subscribe.matches(found)
    assert not grant(SUBSCRIPTIONS_URLPATTERN, match_type=MatchType.URLPATTERN).subscribe.matches(found)


@pytest.mark.parametrize("match_type", list(MatchType))
@pytest.mark.parametrize("match", ["https://example.com/books/1", "a b/c%d?e#f", "https://example.com/:id", "é"])
def test_1_0_ids_name_the_match_type_and_match_and_only_the_1_0_pattern_selects_them(
    match_type: MatchType, match: str
) -> None:
    [found] = subscriptions_of(describe_subscriber("c_abc-_1", [Selector(match_type, match)], None))
    # /.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}
    assert found.v1_id.count("/") == 6 and found.v1_id.split("/")[4] == match_type.value
    assert grant(SUBSCRIPTIONS_URLPATTERN, match_type=MatchType.URLPATTERN).subscribe.matches(found.v1_id)
    assert not grant(SUBSCRIPTIONS_TEMPLATE).subscribe.matches(found.v1_id)


def test_subscriber_iris_name_their_client() -> None:
    described = describe_subscriber("c_x1", topics("t"), None)
    assert client_id_of(described.subscriber) == "c_x1"
    assert client_id_of("urn:uuid:4a3e2b1c-0000-4000-8000-000000000000") is None
    assert client_id_of("urn:sse-hub:client:") is None


def test_updates_are_private_two_forms_per_selector_with_the_payload() -> None:
    selectors = [Selector(MatchType.TOPIC, "a"), Selector(MatchType.URLPATTERN, "/b/:id")]
    described = describe_subscriber("c_1", selectors, grant("*", payload={"n": 1}))
    drafts = subscription_updates(described, active=False)
    a, b = subscriptions_of(described)
    assert [(draft.mercure.topics, draft.event) for draft in drafts if draft.mercure] == [
        ((a.draft07_id,), "message"),
        ((a.v1_id,), "mercure"),
        ((b.draft07_id,), "message"),
        ((b.v1_id,), "mercure"),
    ]
    assert all(draft.mercure and draft.mercure.private and draft.channels == (FEED_CHANNEL,) for draft in drafts)
    assert all('"active":false' in draft.data and '"payload":{"n":1}' in draft.data for draft in drafts)
    assert json.loads(drafts[3].data) == {
        "id": b.v1_id,
        "type": "subscription",
        "match_type": "urlpattern",
        "match": "/b/:id",
        "subscriber": described.subscriber,
        "active": False,
        "payload": {"n": 1},
    }


def test_a_subscriber_stored_without_match_types_has_draft_07_topics() -> None:
    """What a release before the 1.0 form wrote to Redis."""
    described = MercureSubscriber("urn:sse-hub:client:c_1", ("a", "b"), None)
    assert [found.selector for found in subscriptions_of(described)] == topics("a", "b")


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

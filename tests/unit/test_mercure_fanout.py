"""The Mercure fan-out index (exact topics by dict, patterns by list, private updates by
grant, each subscriber once) and the metadata a Mercure message carries between instances.
Subscribers here are plain strings: the index only needs hashable handles.
"""

from __future__ import annotations

import pydantic
import pytest

from sse_hub.mercure.fanout import MercureIndex
from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.publish_form import parse_publish_form
from sse_hub.mercure.selectors import EMPTY, MatchType, Selector, SelectorSet, compile_selectors
from sse_hub.messages.mercure import MercureMeta, MercurePayload

HUB = "https://localhost/.well-known/mercure"
BOOK1 = "https://example.com/books/1"
BOOK2 = "https://example.com/books/2"


def topics(*values: str) -> SelectorSet:
    return compile_selectors([Selector(MatchType.TOPIC, value) for value in values], HUB)


def grant(*subscribe: str) -> MercureGrant:
    return MercureGrant(Protocol.DRAFT_07, EMPTY, topics(*subscribe))


def index_of(**subscribers: tuple[SelectorSet, MercureGrant | None]) -> MercureIndex[str]:
    index: MercureIndex[str] = MercureIndex()
    for name, (subscription, token_grant) in subscribers.items():
        index.add(name, subscription, token_grant)
    return index


def test_exact_and_pattern_subscribers_get_matching_public_updates_once() -> None:
    index = index_of(
        exact=(topics(BOOK1), None),
        both_topics=(topics(BOOK1, BOOK2), None),
        template=(topics("https://example.com/books/{id}"), None),
        everything=(topics("*"), None),
        other=(topics("https://example.com/authors/1"), None),
    )
    assert sorted(index.targets((BOOK1,), private=False)) == ["both_topics", "everything", "exact", "template"]
    # an update with two matching topics still reaches each subscriber once
    assert sorted(index.targets((BOOK1, BOOK2), private=False)) == ["both_topics", "everything", "exact", "template"]
    assert sorted(index.targets(("https://example.com/authors/1",), private=False)) == ["everything", "other"]
    assert index.targets(("unrelated",), private=False) == ["everything"]


def test_private_updates_reach_only_granted_subscribers() -> None:
    index = index_of(
        anonymous=(topics(BOOK1), None),
        granted=(topics(BOOK1), grant("https://example.com/books/{id}")),
        granted_elsewhere=(topics(BOOK1), grant(BOOK2)),
        granted_all=(topics("*"), grant("*")),
    )
    assert sorted(index.targets((BOOK1,), private=True)) == ["granted", "granted_all"]
    # an alternate topic can carry the grant
    assert sorted(index.targets((BOOK1, BOOK2), private=True)) == ["granted", "granted_all", "granted_elsewhere"]
    assert index.accepts("granted", (BOOK1,), True)
    assert not index.accepts("anonymous", (BOOK1,), True)
    assert index.accepts("anonymous", (BOOK1,), False)


def test_removed_subscribers_are_forgotten_everywhere() -> None:
    index = index_of(exact=(topics(BOOK1), None), template=(topics("https://example.com/books/{id}"), grant("*")))
    index.remove("exact")
    index.remove("template")
    index.remove("never-added")
    assert len(index) == 0
    assert index.targets((BOOK1,), private=False) == []
    assert index._by_topic == {} and index._patterned == {}
    assert not index.accepts("exact", (BOOK1,), False)


def test_a_subscriber_is_added_once() -> None:
    index = index_of(a=(topics(BOOK1), None))
    with pytest.raises(ValueError):
        index.add("a", topics(BOOK2), None)


# -- the metadata of a Mercure message --------------------------------------------------------


def test_the_sse_id_is_the_publisher_id_else_the_hub_id() -> None:
    assert MercureMeta((BOOK1,), event_id="urn:uuid:1").sse_id(42) == "urn:uuid:1"
    assert MercureMeta((BOOK1,)).sse_id(42) == "#42"
    # On the sharded broker: the update's position in the feed, its one channel.
    assert MercureMeta((BOOK1,)).sse_id(42, (("~mercure", 42, "k2x9"),)) == "#42.k2x9"
    assert MercureMeta((BOOK1,), event_id="urn:uuid:1").sse_id(42, (("~mercure", 42, "k2x9"),)) == "urn:uuid:1"


def test_a_publish_form_becomes_message_metadata() -> None:
    update = parse_publish_form(b"topic=a&topic=b&private&id=x1", HUB)
    assert update.meta() == MercureMeta(("a", "b"), private=True, event_id="x1")


def test_metadata_round_trips_through_the_broker_payload() -> None:
    for meta in (MercureMeta(("a",)), MercureMeta(("a", "b"), private=True, event_id="id-1")):
        wire = meta.to_payload().model_dump_json(exclude_none=True)
        assert MercurePayload.model_validate_json(wire).to_meta() == meta
    assert MercureMeta(("a",)).to_payload().model_dump_json(exclude_none=True) == '{"topics":["a"]}'


@pytest.mark.parametrize(
    "wire",
    [
        '{"topics":[]}',
        '{"topics":["a\\nb"]}',
        '{"topics":["a"],"event_id":"#1"}',
        '{"topics":["a"],"event_id":"a\\rb"}',
        '{"topics":["a"],"extra":1}',
        '{"private":true}',
    ],
)
def test_a_malformed_broker_payload_is_refused(wire: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        MercurePayload.model_validate_json(wire)

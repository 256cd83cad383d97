"""The Mercure subscribe query -> SubscribeRequest: protocol detection by parameters, the
reserved ``match`` namespace, the cursor's precedence, the query token (draft-07 only)
and the limits. Pure: no server.
"""

from __future__ import annotations

import pytest

from sse_hub.errors import BadRequest
from sse_hub.mercure.ids import CursorKind
from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.selectors import MatchType, Selector
from sse_hub.mercure.subscribe_query import (
    MAX_PATTERN_SELECTORS,
    MAX_SELECTORS,
    SubscribeRequest,
    parse_subscribe_query,
)

HUB = "https://localhost/.well-known/mercure"


def parse(*pairs: tuple[str, str], header: str | None = None) -> SubscribeRequest:
    return parse_subscribe_query(pairs, header, HUB)


def cursor_of(request: SubscribeRequest) -> str | None:
    return None if request.cursor is None else request.cursor.value


def test_topic_parameters_make_a_draft_07_request() -> None:
    request = parse(("topic", "foo"), ("topic", "https://example.net/foo/{random}"))
    assert request.protocol is Protocol.DRAFT_07
    assert request.cursor_response_header == "Last-Event-ID"
    assert request.subscription.matches("foo")
    assert request.subscription.matches("https://example.net/foo/0123abc")
    assert not request.subscription.matches("https://example.net/bar/0123abc")


def test_match_parameters_make_a_1_0_request() -> None:
    request = parse(
        ("match", "https://example.com/{id}"),
        ("match_exact", "b"),
        ("matchExact", "c"),
        ("match_urlpattern", "https://example.com/books/:id"),
        ("matchURLPattern", "/authors/:id"),
    )
    assert request.protocol is Protocol.V1
    assert request.cursor_response_header == "Mercure-Last-Event-ID"
    assert [selector.match_type for selector in request.selectors] == [
        MatchType.EXACT,
        MatchType.EXACT,
        MatchType.EXACT,
        MatchType.URLPATTERN,
        MatchType.URLPATTERN,
    ]
    assert request.subscription.matches("https://example.com/{id}")
    assert not request.subscription.matches("https://example.com/1")  # match= is never a template
    assert request.subscription.matches("https://example.com/books/1")
    assert request.subscription.matches("https://localhost/authors/9")


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ((), "missing 'topic'"),
        ((("lastEventID", "x"),), "missing 'topic'"),
        ((("topic", "a"), ("match", "b")), "not both"),
        ((("match", "a"), ("matchRegex", "b")), "unknown matcher"),
        ((("match", "a"), ("MATCH", "b")), "unknown matcher"),
        ((("match_urlPattern", "a"),), "unknown matcher"),
        ((("topic", ""),), "must not be empty"),
        ((("topic", "a\u0085"),), "control characters"),
        ((("topic", "{a}" * 40),), "at most"),
        ((("match_urlpattern", "https://x/(a|b"),), "URL pattern"),
    ],
)
def test_bad_subscriptions_are_400(pairs: tuple[tuple[str, str], ...], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse(*pairs)


def test_duplicate_selectors_are_merged() -> None:
    assert parse(("topic", "a"), ("topic", "a"), ("topic", "b")).selectors == (
        Selector(MatchType.TOPIC, "a"),
        Selector(MatchType.TOPIC, "b"),
    )


def test_selector_limits() -> None:
    assert len(parse(*[("topic", f"t{i}") for i in range(MAX_SELECTORS)]).selectors) == MAX_SELECTORS
    with pytest.raises(BadRequest, match="selectors"):
        parse(*[("topic", f"t{i}") for i in range(MAX_SELECTORS + 1)])
    templates = [("topic", f"https://e.com/{i}/{{id}}") for i in range(MAX_PATTERN_SELECTORS)]
    assert len(parse(*templates, ("topic", "plain")).selectors) == MAX_PATTERN_SELECTORS + 1
    patterns = [("match_urlpattern", f"/p{i}/:id") for i in range(MAX_PATTERN_SELECTORS)]
    with pytest.raises(BadRequest, match="URI templates or URL patterns"):
        parse(*patterns, ("match_urlpattern", "/x/:id"))
    with pytest.raises(BadRequest, match="URI templates or URL patterns"):
        parse(*templates, ("topic", "https://e.com/x/{id}"))


def test_the_last_event_id_header_wins_over_the_query() -> None:
    assert cursor_of(parse(("topic", "a"), ("lastEventID", "#5"), header="#7")) == "#7"
    assert cursor_of(parse(("topic", "a"), ("lastEventID", "#5"), header="")) == "#5"


def test_each_protocol_prefers_its_own_cursor_parameter() -> None:
    both = (("lastEventID", "legacy"), ("last_event_id", "current"))
    assert cursor_of(parse(("topic", "a"), *both)) == "legacy"
    assert cursor_of(parse(("match", "a"), *both)) == "current"
    assert cursor_of(parse(("match", "a"), ("lastEventID", "legacy"))) == "legacy"
    earliest = parse(("topic", "a"), ("lastEventID", "earliest")).cursor
    assert earliest is not None and earliest.kind is CursorKind.EARLIEST
    assert parse(("topic", "a")).cursor is None


def test_the_query_token_counts_for_draft_07_only() -> None:
    assert parse(("topic", "a"), ("authorization", "tok")).query_token == "tok"
    assert parse(("match", "a"), ("authorization", "tok")).query_token is None

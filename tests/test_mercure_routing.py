"""Mercure routing names: internal channels users can never name, one per topic, plus the
feed that carries every update; which channels a subscription listens on.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sse_hub.config import CHANNEL_PATTERN
from sse_hub.mercure.routing import (
    FEED_CHANNEL,
    is_mercure_channel,
    subscription_channels,
    topic_channel,
    update_channels,
)
from sse_hub.mercure.selectors import MatchType, Selector, compile_selectors

HUB = "https://localhost/.well-known/mercure"


@given(st.text(min_size=1, max_size=3000))
def test_topic_channels_are_bounded_stable_and_outside_the_user_namespace(topic: str) -> None:
    channel = topic_channel(topic)
    assert channel == topic_channel(topic)
    assert len(channel) == 27
    assert CHANNEL_PATTERN.fullmatch(channel) is None
    assert is_mercure_channel(channel)


def test_distinct_topics_get_distinct_channels() -> None:
    topics = [f"https://example.com/books/{n}" for n in range(2000)]
    assert len({topic_channel(topic) for topic in topics}) == len(topics)


def test_the_feed_and_user_channels() -> None:
    assert CHANNEL_PATTERN.fullmatch(FEED_CHANNEL) is None
    assert is_mercure_channel(FEED_CHANNEL)
    assert not is_mercure_channel("events")


def test_an_update_goes_to_its_topics_and_the_feed() -> None:
    assert update_channels(["a", "b", "a"]) == (topic_channel("a"), topic_channel("b"), FEED_CHANNEL)


def test_exact_subscriptions_listen_on_their_topics_and_patterns_on_the_feed() -> None:
    exact = compile_selectors([Selector(MatchType.TOPIC, "b"), Selector(MatchType.EXACT, "a")], HUB)
    assert subscription_channels(exact) == tuple(sorted((topic_channel("a"), topic_channel("b"))))
    for value, match_type in [
        ("*", MatchType.EXACT),
        ("https://e.com/{id}", MatchType.TOPIC),
        ("/x/:id", MatchType.URLPATTERN),
    ]:
        mixed = compile_selectors([Selector(MatchType.EXACT, "a"), Selector(match_type, value)], HUB)
        assert subscription_channels(mixed) == (FEED_CHANNEL,)

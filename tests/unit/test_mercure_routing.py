"""The Mercure feed channel: outside the user channel namespace."""

from __future__ import annotations

from sse_hub.config.settings import CHANNEL_PATTERN
from sse_hub.messages.mercure import FEED_CHANNEL


def test_the_feed_is_outside_the_user_namespace() -> None:
    assert CHANNEL_PATTERN.fullmatch(FEED_CHANNEL) is None

"""A Mercure update on the broker's wire: it round-trips, and what comes back from Redis
is checked with the publish form's rules (the payload is outside this process's control)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft, message_from_payload


def update(meta: MercureMeta) -> Draft:
    return Draft(event="message", data="a\n\nb", channels=(FEED_CHANNEL,), mercure=meta)


def test_a_mercure_update_round_trips_and_carries_its_iri_id() -> None:
    message = update(MercureMeta(("https://example.com/1", "alt"), True, "urn:uuid:1")).numbered(7)
    back = message_from_payload(message.to_payload())
    assert back.mercure == message.mercure
    assert b"id: urn:uuid:1\n" in back.chunk
    hub_id = update(MercureMeta(("https://example.com/1",))).numbered(8)
    assert b"id: #8\n" in message_from_payload(hub_id.to_payload()).chunk


@pytest.mark.parametrize(
    "mercure",
    [
        {"topics": []},
        {"topics": ["bad\ntopic"]},
        {"topics": ["a"], "event_id": "#1"},
        {"topics": ["a"], "event_id": "earliest"},
    ],
)
def test_a_bad_mercure_payload_is_refused(mercure: dict[str, object]) -> None:
    payload = {"id": 1, "event": "message", "data": "", "channels": [FEED_CHANNEL], "mercure": mercure}
    with pytest.raises(ValidationError):
        message_from_payload(json.dumps(payload))


def test_only_the_feed_among_internal_names_is_a_message_channel() -> None:
    payload = {"id": 1, "event": "message", "data": "", "channels": ["~t/abc"]}
    with pytest.raises(ValidationError):
        message_from_payload(json.dumps(payload))

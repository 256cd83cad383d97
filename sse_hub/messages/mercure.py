"""What a hub message carries when it is a Mercure update, and the value rules its fields
obey: the part of Mercure that every layer sees (``messages.message`` holds it).

A Mercure update is published as an ordinary hub message (numbered by the broker's
sequence, stored in the feed channel's history, encoded once) plus ``MercureMeta``: its
topics (for the per-subscriber filter), whether it is private, and the publisher's id. Its
SSE ``id:`` is the publisher's id, else the hub id: ``#<sequence>`` on one id sequence,
``#<seq>.<epoch>`` (its position in the feed channel) on the sharded broker, whose channels
number their messages each on its own; never a bare number, which is not an IRI.

Every update is stored in the history of ``FEED_CHANNEL`` (one hub-wide cursor, as
Mercure wants). Between instances (Redis) it travels on the pub/sub channel of each of its
topics' routing names (``route_channel``, canonical and alternates) and on the feed's own,
the shared feed: an instance whose Mercure streams hold only exact selectors receives the
routing names of those topics, one with a ``*``, a URI template or a URL pattern the shared
feed; every instance then filters locally (``mercure.fanout``). ``~`` is outside the user
channel alphabet (``config.settings.CHANNEL_PATTERN``), so no user can publish or subscribe
to the feed or a routing name by name.

Between instances (Redis) an update travels as ``MercurePayload``, validated on the way in
with the same rules as the publish form: what sits in Redis is outside this process's
control. Nothing here needs the selector engines (RE2, URL patterns): a hub with Mercure
off loads none of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sse_hub.messages.sse import FieldError, check_field

FEED_CHANNEL = "~mercure"
# Routing names are this prefix and a hash of the topic (``route_channel``).
ROUTE_PREFIX = "~mercure:"
# The cursor a subscriber sends to get every retained update, and the value of the
# response header when the hub replays from the oldest update it holds.
EARLIEST = "earliest"
MAX_SELECTOR_CHARS = 2048
MAX_ID_CHARS = 1024


class InvalidEventId(ValueError):
    """A publisher-supplied id the hub refuses; the message says why."""


class InvalidSelector(ValueError):
    """A selector the hub refuses: bad characters, too long, too complex, or (URL
    patterns) not a valid pattern. The message says which, for a 400 body."""


def route_channel(topic: str) -> str:
    """The routing name of updates to ``topic``: a 128-bit BLAKE2b of it, so that the name
    is short whatever the topic's length (up to ``MAX_SELECTOR_CHARS``) and stays outside
    the user channel alphabet. Two topics that share a name (a collision, or never in
    practice) only cost an instance an update it did not need: ``mercure.fanout`` filters
    every update by its topics, never by the name it came on."""
    return ROUTE_PREFIX + hashlib.blake2b(topic.encode(), digest_size=16).hexdigest()


def history_channel(channel: str) -> str:
    """The channel whose history holds what arrives on ``channel``: the feed for a routing
    name (routing names have no history of their own), else ``channel`` itself."""
    return FEED_CHANNEL if channel.startswith(ROUTE_PREFIX) else channel


def hub_event_id(sequence: int, epoch: str = "") -> str:
    """The IRI of the update numbered ``sequence`` by the hub: ``#<sequence>``, or with the
    feed channel's ``epoch`` (per-channel positions) ``#<sequence>.<epoch>``."""
    if sequence < 1:
        raise ValueError("hub sequences start at 1")
    return f"#{sequence}.{epoch}" if epoch else f"#{sequence}"


def check_publisher_id(event_id: str) -> None:
    """Raise InvalidEventId unless ``event_id`` may be used as a publisher-supplied id."""
    if len(event_id) > MAX_ID_CHARS:
        raise InvalidEventId(f"id may have at most {MAX_ID_CHARS} characters")
    try:
        check_field("id", event_id)
    except FieldError as exc:
        raise InvalidEventId(str(exc)) from exc
    if event_id.startswith("#"):
        raise InvalidEventId("id must not start with '#' (the hub's own ids do)")
    if event_id == EARLIEST:
        raise InvalidEventId("id must not be 'earliest' (the cursor that asks for the whole history)")


def check_selector_value(value: str, what: str = "selector") -> None:
    """Raise InvalidSelector for an empty or over-long value, or one carrying C0 or C1
    controls, DEL, or a lone surrogate (bytes that were not UTF-8)."""
    if not value:
        raise InvalidSelector(f"a {what} must not be empty")
    if len(value) > MAX_SELECTOR_CHARS:
        raise InvalidSelector(f"a {what} may have at most {MAX_SELECTOR_CHARS} characters")
    if any(ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F or 0xD800 <= ord(char) <= 0xDFFF for char in value):
        raise InvalidSelector(f"a {what} must be UTF-8 without control characters")


MAX_TOPICS = 256


@dataclass(frozen=True, slots=True)
class MercureMeta:
    topics: tuple[str, ...]
    private: bool = False
    event_id: str | None = None  # publisher-supplied, validated by publish_form

    def sse_id(self, sequence: int, pos: Sequence[tuple[str, int, str]] = ()) -> str:
        """The update's id on the wire and in the publish answer. ``pos``: the message's
        positions when the broker numbers each channel on its own (its one channel is the
        feed): the hub id then carries the feed's epoch."""
        if self.event_id is not None:
            return self.event_id
        return hub_event_id(pos[0][1], pos[0][2]) if pos else hub_event_id(sequence)

    def to_payload(self) -> MercurePayload:
        return MercurePayload(topics=list(self.topics), private=self.private or None, event_id=self.event_id)


def _topic(value: str) -> str:
    check_selector_value(value, "topic")
    return value


def _event_id(value: str) -> str:
    check_publisher_id(value)
    return value


class MercurePayload(BaseModel):
    """``MercureMeta`` on the broker's wire; dump with ``exclude_none=True``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    topics: Annotated[list[Annotated[str, AfterValidator(_topic)]], Field(min_length=1, max_length=MAX_TOPICS)]
    private: bool | None = None
    event_id: Annotated[str, AfterValidator(_event_id)] | None = None

    def to_meta(self) -> MercureMeta:
        return MercureMeta(tuple(self.topics), bool(self.private), self.event_id)

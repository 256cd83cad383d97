"""What a hub message carries when it is a Mercure update (the hook for ``models.Message``).

A Mercure update is published as an ordinary hub message (numbered by the broker's one
sequence, stored in the feed channel's history, encoded once) plus this metadata: its
topics (for the per-subscriber filter), whether it is private, and the publisher's id.
Its SSE ``id:`` is the publisher's id, else the hub id ``#<sequence>``: never the bare
sequence, which is not an IRI.

Between instances (Redis) it travels as ``MercurePayload``, validated on the way in with
the same rules as the publish form: what sits in Redis is outside this process's control.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from sse_hub.mercure.ids import check_publisher_id, hub_event_id
from sse_hub.mercure.selectors import check_selector_value

MAX_TOPICS = 256


@dataclass(frozen=True, slots=True)
class MercureMeta:
    topics: tuple[str, ...]
    private: bool = False
    event_id: str | None = None  # publisher-supplied, validated by publish_form

    def sse_id(self, sequence: int) -> str:
        """The update's id on the wire and in the publish answer."""
        return self.event_id if self.event_id is not None else hub_event_id(sequence)

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

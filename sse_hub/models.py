"""Messages: the publish request (validated at the HTTP boundary) and the internal Message.

A ``PublishItem`` is what a publisher sends; ``Draft`` is a validated message without an
id; a ``Message`` is a draft the broker has numbered and stored. A Message encodes itself
once (SSE frame inside one HTTP chunk) and caches the bytes, so fan-out hands the same
bytes to every subscriber and replay re-uses them.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    field_validator,
    model_validator,
)
from pydantic_core import to_json

from sse_hub import sse
from sse_hub.config import CHANNEL_PATTERN

GLOBAL_CHANNEL = "*"
MAX_CHANNELS_PER_MESSAGE = 100
MAX_RETRY_MS = 86_400_000

ChannelName = Annotated[str, StringConstraints(pattern=f"^{CHANNEL_PATTERN.pattern}$")]
EventName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\r\n\x00]+$")]
ClientId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
RetryMs = Annotated[int, Field(strict=True, ge=0, le=MAX_RETRY_MS)]


def _check_utf8(value: str, what: str) -> str:
    """Reject lone surrogates (JSON "\\ud800"): they cannot be sent as UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} is not valid Unicode (lone surrogate)") from exc
    return value


def _check_finite(data: bytes, value: JsonValue) -> None:
    """JSON has no NaN or Infinity, but the parser accepts them and overflows ``1e400`` to
    infinity; sent on, they would be a bare ``Infinity`` that no JSON parser reads. The
    serialized form is searched first (fast, in C) so ordinary data is never walked."""
    if b"NaN" not in data and b"Infinity" not in data:
        return
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("data holds a number JSON cannot carry (NaN, Infinity or out of range)")
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())


class PublishItem(BaseModel):
    """One message as a publisher sends it in ``POST /broadcast``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: JsonValue
    event: EventName = "message"
    channels: Annotated[list[ChannelName], Field(min_length=1, max_length=MAX_CHANNELS_PER_MESSAGE)] | None = None
    channel: ChannelName | None = None
    retry: RetryMs | None = None
    exclude_client_id: ClientId | None = None
    client_id: ClientId | None = None

    @field_validator("event")
    @classmethod
    def _event_is_utf8(cls, event: str) -> str:
        return _check_utf8(event, "event")

    @model_validator(mode="after")
    def _one_target(self) -> PublishItem:
        if self.channel is not None and self.channels is not None:
            raise ValueError("give either 'channel' or 'channels', not both")
        if self.client_id is not None and (self.channel is not None or self.channels is not None):
            raise ValueError("a direct message ('client_id') takes no channels")
        return self

    def to_draft(self) -> Draft:
        if isinstance(self.data, str):
            data = _check_utf8(self.data, "data")
        else:
            encoded = to_json(self.data)
            _check_finite(encoded, self.data)
            data = encoded.decode()
        if self.client_id is not None:
            channels: tuple[str, ...] = ()
        elif self.channel is not None:
            channels = (self.channel,)
        elif self.channels is not None:
            channels = tuple(dict.fromkeys(self.channels))
        else:
            channels = (GLOBAL_CHANNEL,)
        return Draft(
            event=self.event,
            data=data,
            channels=channels,
            retry_ms=self.retry,
            client_id=self.client_id,
            exclude_client_id=self.exclude_client_id,
            published_at=time.time(),
        )


PUBLISH_BATCH: TypeAdapter[list[PublishItem]] = TypeAdapter(list[PublishItem])


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated message that has no id yet. ``channels`` is ``("*",)`` for a global
    broadcast and ``()`` for a direct message to ``client_id``."""

    event: str
    data: str
    channels: tuple[str, ...]
    retry_ms: int | None = None
    client_id: str | None = None
    exclude_client_id: str | None = None
    kick: bool = False
    published_at: float = 0.0

    def numbered(self, message_id: int) -> Message:
        return Message(
            id=message_id,
            event=self.event,
            data=self.data,
            channels=self.channels,
            retry_ms=self.retry_ms,
            client_id=self.client_id,
            exclude_client_id=self.exclude_client_id,
            kick=self.kick,
            published_at=self.published_at,
        )


@dataclass(slots=True, eq=False)
class Message:
    """A numbered message. ``chunk`` is its wire form, computed once and cached."""

    id: int
    event: str
    data: str
    channels: tuple[str, ...]
    retry_ms: int | None = None
    client_id: str | None = None
    exclude_client_id: str | None = None
    # A control message: disconnect ``client_id`` wherever it is connected (DELETE /clients).
    kick: bool = False
    # When the publish request was accepted (epoch seconds), for the fan-out latency metric.
    published_at: float = 0.0
    _chunk: bytes | None = field(default=None, repr=False)
    _frame_bytes: int = field(default=0, repr=False)

    @property
    def chunk(self) -> bytes:
        chunk = self._chunk
        return chunk if chunk is not None else self._encode()

    @property
    def frame_bytes(self) -> int:
        """The SSE frame's length inside ``chunk`` (what a client's ``bytes_sent`` counts)."""
        if self._chunk is None:
            self._encode()
        return self._frame_bytes

    def _encode(self) -> bytes:
        frame = sse.encode_event(self.data, self.event, str(self.id), self.retry_ms)
        self._frame_bytes = len(frame)
        self._chunk = chunk = sse.chunk(frame)
        return chunk

    def to_payload(self) -> bytes:
        """JSON for the broker's wire (Redis); the inverse of ``message_from_payload``."""
        return (
            MessagePayload(
                id=self.id,
                event=self.event,
                data=self.data,
                channels=list(self.channels),
                retry_ms=self.retry_ms,
                client_id=self.client_id,
                exclude_client_id=self.exclude_client_id,
                kick=True if self.kick else None,
                published_at=self.published_at,
            )
            .model_dump_json(exclude_none=True)
            .encode()
        )


class MessagePayload(BaseModel):
    """A message as brokers carry it between instances: validated on the way in, since
    whatever sits in Redis is outside this process's control."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Annotated[int, Field(ge=1)]
    event: EventName
    data: str
    channels: list[Annotated[str, StringConstraints(pattern=rf"^(\*|{CHANNEL_PATTERN.pattern})$")]]
    retry_ms: RetryMs | None = None
    client_id: ClientId | None = None
    exclude_client_id: ClientId | None = None
    kick: bool | None = None
    published_at: float | None = None


def message_from_payload(payload: bytes | str) -> Message:
    """Parse a broker payload; raises pydantic.ValidationError when it is malformed."""
    item = MessagePayload.model_validate_json(payload)
    return Message(
        id=item.id,
        event=item.event,
        data=item.data,
        channels=tuple(item.channels),
        retry_ms=item.retry_ms,
        client_id=item.client_id,
        exclude_client_id=item.exclude_client_id,
        kick=bool(item.kick),
        published_at=item.published_at or 0.0,
    )


def is_valid_channel(name: str) -> bool:
    return CHANNEL_PATTERN.fullmatch(name) is not None


ID_PATTERN = re.compile(r"[0-9]{1,19}")


def parse_event_id(value: str) -> int | None:
    """A Last-Event-ID as an integer, or None when it is not one of ours."""
    return int(value) if ID_PATTERN.fullmatch(value) else None

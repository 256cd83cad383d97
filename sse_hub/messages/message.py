"""Messages: each publish field defined once, and the three shapes built from them.

A field's type, constraints and description live in one annotated alias below
(``EventName``, ``RetryMs``...). From them:

- ``PublishItem`` is what a publisher sends (one message, or one item of a batch); it is
  validated at the HTTP boundary and becomes a ``Draft``;
- ``Draft`` is a validated message without an id; ``Draft.numbered`` makes it a
  ``Message``, a Draft with an ``id`` (a subclass: the fields are Draft's);
- ``Message`` is also the broker's wire format: ``to_payload`` writes it as JSON and
  ``message_from_payload`` validates it on the way back through a pydantic TypeAdapter
  over the dataclass, since whatever sits in Redis is outside this process's control.

Invariants: ``Draft`` and ``Message`` stay plain slotted dataclasses (they are on the
fan-out path; the annotations cost nothing at runtime), frozen to the type checker
(``_record``; mypy is strict on ``sse_hub``) and not at run time, where a frozen
dataclass's ``__init__`` sets each field through ``object.__setattr__``: 1.7 us for
Message's 15 fields against 0.27 us (docs/performance.md, "S6, the batched publish"). A
Message is equal only to itself. It encodes itself once (SSE frame inside one HTTP chunk) and caches the bytes, so
fan-out hands the same bytes to every subscriber and replay re-uses them. The payload
starts with ``{"id":`` (the Redis publish script relies on it) and leaves out unset
fields and ``kick`` and ``final`` when false.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from operator import attrgetter
from typing import Annotated, TypeVar

from pydantic import (
    AfterValidator,
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
from typing_extensions import TypeAliasType, dataclass_transform

from sse_hub.config.settings import CHANNEL_PATTERN
from sse_hub.messages import sse
from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta, MercurePayload

GLOBAL_CHANNEL = "*"
MAX_CHANNELS_PER_MESSAGE = 100
MAX_RETRY_MS = 86_400_000

# -- the fields, each once (a TypeAliasType is a named schema in /openapi.json) -----------

ChannelName = TypeAliasType(
    "ChannelName",
    Annotated[str, StringConstraints(pattern=f"^{CHANNEL_PATTERN.pattern}$"), Field(examples=["stocks"])],
)
# Where a message goes: a channel, ``*`` for every client, or the Mercure feed.
Target = Annotated[str, StringConstraints(pattern=rf"^(\*|{FEED_CHANNEL}|{CHANNEL_PATTERN.pattern})$")]
EventName = TypeAliasType(
    "EventName",
    Annotated[
        str,
        StringConstraints(min_length=1, max_length=128, pattern=r"^[^\r\n\x00]+$"),
        Field(description="The SSE event type; `message` is sent without an `event:` line."),
    ],
)
ClientId = TypeAliasType("ClientId", Annotated[str, StringConstraints(min_length=1, max_length=128)])
RetryMs = Annotated[
    int,
    Field(strict=True, ge=0, le=MAX_RETRY_MS, description="Sent as `retry:`: the client's reconnection delay in ms."),
]
# 0 only for a message the sharded broker does not number (a direct message or a kick).
MessageId = Annotated[int, Field(ge=0)]
# Where a message sits in one channel with the sharded Redis Cluster broker: (channel, seq,
# epoch). ``seq`` counts that channel's messages from 1; ``epoch`` (4 base36 characters)
# changes when the channel's counter had to start again (Redis lost it).
ChannelPosition = tuple[str, Annotated[int, Field(ge=1)], Annotated[str, StringConstraints(pattern=r"^[0-9a-z]{4}$")]]
Positions = Annotated[tuple[ChannelPosition, ...], Field(exclude_if=lambda positions: not positions)]
# A control message: disconnect ``client_id`` wherever it is connected (DELETE /clients).
Kick = Annotated[bool, Field(exclude_if=lambda kick: not kick)]
# The channel's last message: after it the channels of the message have ended (docs/api.md).
Final = Annotated[bool, Field(exclude_if=lambda final: not final)]
# When the publish request was accepted (epoch seconds), for the fan-out latency metric.
PublishedAt = float


def _check_mercure(meta: MercureMeta) -> MercureMeta:
    """A Mercure update's metadata from the broker, checked as the publish form is."""
    return MercurePayload(topics=list(meta.topics), private=meta.private, event_id=meta.event_id).to_meta()


# Set when the message is a Mercure update (sse_hub/messages/mercure.py).
Mercure = Annotated[MercureMeta, AfterValidator(_check_mercure)]


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


# -- what a publisher sends -----------------------------------------------------------------


class PublishItem(BaseModel):
    """One message as a publisher sends it in ``POST /broadcast``."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [{"event": "stockUpdate", "data": {"symbol": "AAPL", "price": 182.3}, "channels": ["stocks"]}],
            # _one_target, for readers of the schema (null is the same as leaving a field out).
            "allOf": [
                {
                    "not": {
                        "properties": {"channel": {"type": "string"}, "channels": {"type": "array"}},
                        "required": ["channel", "channels"],
                    }
                },
                {
                    "if": {"properties": {"client_id": {"type": "string"}}, "required": ["client_id"]},
                    "then": {"properties": {"channel": {"type": "null"}, "channels": {"type": "null"}}},
                },
            ],
        },
    )

    data: Annotated[
        JsonValue,
        Field(
            description="A string is sent verbatim, one `data:` line per line (CRLF, CR and LF all end "
            "a line); any other JSON value, `null` included, as compact JSON."
        ),
    ]
    event: EventName = "message"
    channels: (
        Annotated[
            list[ChannelName],
            Field(
                min_length=1,
                max_length=MAX_CHANNELS_PER_MESSAGE,
                description="Omit both `channel` and `channels` to reach every client (channel `*`).",
            ),
        ]
        | None
    ) = None
    channel: ChannelName | None = None
    retry: RetryMs | None = None
    exclude_client_id: Annotated[ClientId, Field(description="Everyone but this client.")] | None = None
    client_id: Annotated[ClientId, Field(description="This client only (direct, not kept in history).")] | None = None
    final: Annotated[
        bool,
        Field(
            description="The last message of its channels: streams get it, then `event: end`, and close "
            "when all their channels have ended; later publishes to them get 409 `channel_finished`. "
            "Needs `channel` or `channels`."
        ),
    ] = False

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
        if self.final and self.channel is None and self.channels is None:
            raise ValueError("a final message ('final': true) needs 'channel' or 'channels'")
        return self

    def targets(self) -> tuple[str, ...]:
        """``("*",)`` for a global broadcast, ``()`` for a direct message."""
        if self.client_id is not None:
            return ()
        if self.channel is not None:
            return (self.channel,)
        channels = self.channels
        if channels is not None:
            return (channels[0],) if len(channels) == 1 else tuple(dict.fromkeys(channels))
        return (GLOBAL_CHANNEL,)

    def to_draft(self, published_at: float | None = None) -> Draft:
        """The item as a Draft. A batch passes one ``published_at`` for all its items
        (they are accepted together); the Draft is built by position, one call per item
        (S6 in docs/performance.md: this runs once per message of every publish)."""
        data = self.data
        if isinstance(data, str):
            data = _check_utf8(data, "data")
        else:
            encoded = to_json(data)
            if b"NaN" in encoded or b"Infinity" in encoded:
                _check_finite(encoded, data)
            data = encoded.decode()
        return Draft(
            self.event,
            data,
            self.targets(),
            self.retry,
            self.client_id,
            self.exclude_client_id,
            False,
            time.time() if published_at is None else published_at,
            None,
            self.final,
        )


PUBLISH_BATCH: TypeAdapter[list[PublishItem]] = TypeAdapter(list[PublishItem])

# -- inside the hub and between instances ---------------------------------------------------

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def _record(*, eq: bool = True) -> Callable[[type[_T]], type[_T]]:
    """A slotted dataclass that the type checker holds frozen (module docstring); with
    ``eq``, hashed by its fields as a frozen one is."""
    return dataclass(slots=True, eq=eq, unsafe_hash=eq)


@_record()
class Draft:
    """A validated message that has no id yet. ``channels`` is ``("*",)`` for a global
    broadcast and ``()`` for a direct message to ``client_id``."""

    event: EventName
    data: str
    channels: tuple[Target, ...]
    retry_ms: RetryMs | None = None
    client_id: ClientId | None = None
    exclude_client_id: ClientId | None = None
    kick: Kick = False
    published_at: PublishedAt = 0.0
    mercure: Mercure | None = None
    final: Final = False

    def numbered(self, message_id: int) -> Message:
        return Message(*_draft_values(self), id=message_id)


@_record(eq=False)
class Message(Draft):
    """A numbered draft. ``chunk`` is its wire form, computed once and cached."""

    __pydantic_config__ = ConfigDict(extra="forbid")
    # Identity, not field equality (as Draft has): two messages with equal fields are two.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    id: MessageId = field(kw_only=True)
    # Sharded broker only (sse_hub/core/positions/event_ids.py): this part's position in each of its channels,
    # and the positions of the parts of the same publish that went out before it.
    pos: Positions = field(default=(), kw_only=True)
    prior: Positions = field(default=(), kw_only=True)
    _chunk: Annotated[bytes | None, Field(exclude=True)] = field(default=None, repr=False, init=False)
    _frame_bytes: Annotated[int, Field(exclude=True)] = field(default=0, repr=False, init=False)

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
        mercure = self.mercure
        event_id = str(self.id) if mercure is None else mercure.sse_id(self.id, self.pos)
        frame = sse.encode_event(self.data, self.event, event_id, self.retry_ms)
        chunk = sse.chunk(frame)
        # The cache is the one thing set after __init__ (frozen: object.__setattr__).
        object.__setattr__(self, "_frame_bytes", len(frame))
        object.__setattr__(self, "_chunk", chunk)
        return chunk

    def to_payload(self) -> bytes:
        """JSON for the broker's wire (Redis); the inverse of ``message_from_payload``.
        The id comes first: the Redis publish script writes it in front of the rest
        (``payload_tail``)."""
        return b'{"id":%d' % self.id + payload_tail(self)


# One C call reads every field of a draft, in the order Message's __init__ takes them.
_draft_values = attrgetter(*(item.name for item in fields(Draft)))
DRAFT_FIELDS: TypeAdapter[Draft] = TypeAdapter(Draft)
MESSAGE_PAYLOAD: TypeAdapter[Message] = TypeAdapter(Message)


def payload_tail(draft: Draft) -> bytes:
    """A draft's broker payload after its id (``,"event":...}``), without numbering it
    first: the Redis publish script writes ``{"id":N`` in front of it."""
    return b"," + DRAFT_FIELDS.dump_json(draft, exclude_none=True)[1:]


def message_from_payload(payload: bytes | str) -> Message:
    """Parse a broker payload; raises pydantic.ValidationError when it is malformed."""
    return MESSAGE_PAYLOAD.validate_json(payload)


def is_valid_channel(name: str) -> bool:
    return CHANNEL_PATTERN.fullmatch(name) is not None


ID_PATTERN = re.compile(r"[0-9]{1,19}")


def parse_event_id(value: str) -> int | None:
    """A Last-Event-ID as an integer, or None when it is not one of ours."""
    return int(value) if ID_PATTERN.fullmatch(value) else None

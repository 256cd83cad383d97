"""The bodies of the HTTP API that are not a published message: each declared once, as
the type its handler builds and serialises, and as its schema in ``/openapi.json``.

Responses are ``TypedDict``s: a handler builds a plain dict (no per-item model, no
validation of our own output; mypy checks the keys and types) and serialises it with
the ``TypeAdapter`` below in one call. Requests that need validating are pydantic models
(``TicketRequest`` here, ``messages.message.PublishItem`` for messages).

Invariant: the OpenAPI document (``openapi.spec``) takes every schema from this module and
``messages.message``, so a response cannot change shape without its schema changing with it.
"""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, TypeAdapter, with_config
from typing_extensions import TypeAliasType, TypedDict

from sse_hub.config.settings import CHANNEL_PATTERN
from sse_hub.messages.message import ChannelName, ClientId

MAX_TICKET_TTL_SECONDS = 3600
MAX_TICKET_CHANNELS = 100

Timestamp = Annotated[str, Field(description="ISO 8601 UTC", json_schema_extra={"format": "date-time"})]
Count = Annotated[int, Field(ge=0)]
ChannelCounts = dict[str, Count]
ChannelPattern = TypeAliasType(
    "ChannelPattern",
    Annotated[
        str,
        StringConstraints(pattern=rf"^(\*|{CHANNEL_PATTERN.pattern}(\.\*)?)$"),
        Field(description="A channel, `*` (every channel) or `prefix.*` (`prefix.a`, `prefix.a.b`)."),
    ],
)


@with_config(ConfigDict(extra="forbid"))
class Receipt(TypedDict):
    """A published message: ``POST /broadcast`` answers one, or a list for a batch."""

    id: Annotated[
        str,
        Field(
            pattern=r"^(?:[1-9][0-9]*|[0-9a-z]{4}(?:\.(?:0|[0-9a-z]{5,16}))*)$",
            description="Decimal, increasing in publish order across the cluster; with the sharded Redis "
            "Cluster (`broker.cluster_mode: sharded`), the message's position in each of its channels: "
            "`<list>.<position>...`, what a stream on exactly those channels shows for it (docs/scaling.md).",
        ),
    ]
    channels: Annotated[list[str], Field(description='`["*"]` for a global broadcast, `[]` for a direct message.')]
    client_id: NotRequired[Annotated[ClientId, Field(description="Present for a direct message.")]]
    final: NotRequired[
        Annotated[Literal[True], Field(description="Present for a final message: its channels have ended.")]
    ]


@with_config(ConfigDict(extra="forbid"))
class ErrorBody(TypedDict):
    """Every error a client sees."""

    error: Annotated[
        str,
        Field(
            description="A stable code: bad_request, invalid_channel, unauthorized, forbidden, not_found, "
            "unknown_client, channel_finished, payload_too_large, unsupported_media_type, too_many_connections_per_ip, "
            "too_many_connections, broker_unavailable, ..."
        ),
    ]
    detail: Annotated[JsonValue, Field(description="A message, or a list of the invalid fields, or null.")]


@with_config(ConfigDict(extra="forbid"))
class PublishStreamSummary(TypedDict):
    """What an NDJSON publish stream published: ``POST /broadcast`` with
    ``application/x-ndjson`` answers it (202)."""

    published: Annotated[int, Field(ge=0, description="Messages published, one per line that held one.")]
    first_id: Annotated[str | None, Field(description="The receipt id of the first; null when none.")]
    last_id: Annotated[str | None, Field(description="The receipt id of the last; null when none.")]


@with_config(ConfigDict(extra="forbid"))
class PublishStreamError(PublishStreamSummary):
    """An NDJSON publish stream stopped by an error: what it published before it, and the
    line that stopped it (1-based; 0 when no line was read, e.g. on ``408`` before any)."""

    error: str
    detail: JsonValue
    line: Annotated[int, Field(ge=0)]


class InstanceSummary(TypedDict):
    """What an instance tells the cluster about itself (also the head of ``/stats``)."""

    instance: str
    started_at: Timestamp
    total_clients: Count
    channels: Annotated[ChannelCounts, Field(description="Connected clients per channel.")]


@with_config(ConfigDict(extra="forbid"))
class ClientInfo(TypedDict):
    """One connected client in ``/stats``."""

    id: str
    ip: str
    channels: list[ChannelName]
    connected_at: Timestamp
    last_activity: Timestamp
    messages_sent: Count
    bytes_sent: Count
    buffered_bytes: Count
    user_agent: str


NEXT = "Pass as `?after=` for the next page of clients, in client id order; null at the end."


@with_config(ConfigDict(extra="forbid"))
class PresenceClient(TypedDict):
    """One client holding a channel, on any live instance (``/channels/{name}?clients=1``)."""

    id: str
    instance: str
    ip: str
    channels: list[ChannelName]
    connected_at: Timestamp
    messages_sent: Annotated[Count, Field(description="As of its instance's last refresh (docs/api.md).")]


@with_config(ConfigDict(extra="forbid"))
class ChannelPresence(TypedDict):
    """``GET /channels/{name}``: the streams that hold a channel, per live instance and in all."""

    channel: ChannelName
    subscribers: Count
    instances: Annotated[ChannelCounts, Field(description="Every live instance, with its streams on the channel.")]
    clients: NotRequired[Annotated[list[PresenceClient], Field(description="With `?clients=1`: one page.")]]
    next: NotRequired[Annotated[str | None, Field(description="With `?clients=1`. " + NEXT)]]


@with_config(ConfigDict(extra="forbid"))
class ClientPresence(TypedDict):
    """``GET /clients/{id}``: a client wherever it is connected in the cluster."""

    id: str
    instance: str
    ip: str
    channels: list[ChannelName]
    connected_at: Timestamp
    last_activity: Timestamp
    messages_sent: Count
    bytes_sent: Count


@with_config(ConfigDict(extra="forbid"))
class ClusterTotals(TypedDict):
    instances: Count
    total_clients: Count
    channels: ChannelCounts


@with_config(ConfigDict(extra="forbid"))
class Stats(InstanceSummary):
    """``GET /stats``: this instance's connections and counters."""

    messages_published: Count
    messages_delivered: Annotated[Count, Field(description="Messages written to clients (not heartbeats).")]
    slow_disconnects: Count
    clients: list[ClientInfo]
    next: NotRequired[
        Annotated[str | None, Field(description=f"{NEXT} Sent when the list stopped short, or with `after`/`channel`.")]
    ]


@with_config(ConfigDict(extra="forbid"))
class ClusterStats(Stats):
    """``GET /stats?scope=cluster``: ``Stats`` and the cluster's instances and totals."""

    instances: Annotated[list[InstanceSummary], Field(description="Every live instance.")]
    cluster: ClusterTotals


class TicketRequest(BaseModel):
    """``POST /tickets``: the channels a one-time stream ticket allows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    channels: Annotated[list[ChannelPattern], Field(min_length=1, max_length=MAX_TICKET_CHANNELS)]
    ttl_seconds: Annotated[int, Field(strict=True, ge=1, le=MAX_TICKET_TTL_SECONDS)] = 60


@with_config(ConfigDict(extra="forbid"))
class Ticket(TypedDict):
    """A one-time ticket for ``?ticket=``."""

    ticket: Annotated[str, Field(description="Pass as `?ticket=`; accepted once.")]
    expires_at: Timestamp
    channels: list[ChannelPattern]


class Health(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    status: Literal["ready", "unavailable"]
    detail: NotRequired[str]


class ClientDisconnected(TypedDict):
    id: str
    disconnected: Literal[True]


class Connected(TypedDict):
    """The data of a stream's first event, ``event: connected`` (it has no id)."""

    client_id: str
    channels: list[ChannelName]


class Reset(TypedDict):
    """The data of ``event: reset``: the messages after ``last_event_id`` cannot be replayed
    (null: the stream asked for ``?from=start``)."""

    reason: Literal["unknown_id", "history_expired"]
    last_event_id: str | None


class End(TypedDict):
    """The data of ``event: end`` (no id): ``channel`` has ended, after its final message."""

    channel: ChannelName


RECEIPT: TypeAdapter[Receipt] = TypeAdapter(Receipt)
RECEIPTS: TypeAdapter[list[Receipt]] = TypeAdapter(list[Receipt])
STATS: TypeAdapter[Stats] = TypeAdapter(Stats)
CLUSTER_STATS: TypeAdapter[ClusterStats] = TypeAdapter(ClusterStats)
TICKET: TypeAdapter[Ticket] = TypeAdapter(Ticket)
CONNECTED: TypeAdapter[Connected] = TypeAdapter(Connected)
RESET: TypeAdapter[Reset] = TypeAdapter(Reset)
END: TypeAdapter[End] = TypeAdapter(End)
CHANNEL_PRESENCE: TypeAdapter[ChannelPresence] = TypeAdapter(ChannelPresence)
CLIENT_PRESENCE: TypeAdapter[ClientPresence] = TypeAdapter(ClientPresence)
PUBLISH_STREAM_SUMMARY: TypeAdapter[PublishStreamSummary] = TypeAdapter(PublishStreamSummary)

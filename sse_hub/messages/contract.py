"""The contracts below the hub: the ``Broker`` carries messages; the ``ClientDirectory``
and the ``TicketStore`` hold what the instances of a cluster share besides. A backend
creates the three together (``Backend``; ``web/app.py`` picks one), and each goes to whoever
needs it: the broker and the directory to the hub, the tickets to the routes. Fan-out
lives above them, in the hub.

The broker:

A broker:

- ``start(deliver, lost)``: connect; from then on call ``deliver(message)`` (synchronously,
  on the event loop) once for every message this instance must see, in id order: every
  message of an attached channel, every global message (``*``), every direct message or
  kick for a client of this instance. A broker may deliver more (the memory broker
  delivers everything; the hub drops what no stream wants). ``start`` returns once the
  broker is ready to publish and receive. When the broker may have missed messages that
  it cannot recover (Redis lost its data, or too much was missed while disconnected) it
  calls ``lost()``: the hub then ends its streams, which resume from history, where the
  loss shows as ``reset``. A stream is never left silently short.
- ``attach(channels)``: start receiving ``channels`` and return once every message
  published to them from now on will reach ``deliver``; raises ``BrokerUnavailable``
  when it cannot. The hub awaits it before it reads history or sends ``connected``, so a
  stream misses nothing published after its ``connected`` event. Attachments are counted
  before the first await: call ``detach(channels)`` exactly once per ``attach`` call,
  also when it raised. After the last detach a broker may stop receiving the channel
  (Redis: after a linger). Default: nothing to do (a broker that receives everything).
- ``publish(drafts)``: give every draft the next id of one cluster-wide sequence, store
  it in the history of each of its channels (not direct messages), and publish it, all
  or nothing. It returns the numbered messages only once they are stored and published;
  it raises ``BrokerUnavailable`` when it cannot take them (then nothing was applied,
  except when the broker lost the reply: see the broker's docstring),
  ``UnknownClient`` for a direct message to a client no instance holds, and
  ``ChannelFinished`` when a draft names a channel that has ended (then nothing of the
  call was applied). A message is never acknowledged unless it was stored and published.
- ``publish_now(drafts)``: the same, without awaiting, for a broker that never has to
  wait to publish (the memory broker, which sets ``publishes_now``); None from a broker
  that does (default), which is then called through ``publish``. A publish that needs no
  await saves the caller a task (the front path, ``web/front.py``); a caller that knows
  the broker awaits (``publishes_now`` False) starts the task at once instead.
- A draft with ``final`` ends its channels: the broker stores the final mark with the
  channel's history in the same atomic step as the message, so no two instances can
  disagree on whether a channel has ended, and no message can follow the final one (a
  later draft of the same ``publish`` call on that channel is refused too). After
  ``history.finished_ttl_seconds`` the channel is forgotten, mark and history: it is
  then a channel that was never used.
- ``finished(channels)``: of ``channels``, those that have ended, each with the id of
  its final message (an empty dict when none has).
- ``history(channels, after_id, limit=None)``: the retained messages of those channels
  with an id greater than ``after_id``, in id order, each once (at most ``limit`` of them,
  the oldest, with ``complete`` False when more remain: a replay is read in pages, so
  what a slow client is owed stays in the broker), plus whether any message newer than
  ``after_id`` was evicted from one of them (by count or age; it may say so needlessly,
  never wrongly say no) and the highest id ever published.
- ``find_publisher_id(channel, event_id)``: the id of the earliest retained message of
  ``channel`` whose publisher gave it the id ``event_id`` (a Mercure update's own id), or
  None. Default: a scan of the channel's history in pages (``history.size`` reads at
  most); a broker may keep an index beside the history instead (the memory broker does).
- ``arriving()``: a future that resolves once this instance's own messages that are on
  their way back to it through the broker (published, not yet delivered) were delivered,
  or None when none are (default: a broker that delivers during ``publish``). The hub's
  flusher waits for it, briefly, so they share a write with what is already waiting. It
  may resolve early; the caller may cancel it.
- ``connected``: whether publishing can work right now (``/readyz``).
- ``stop()``: release everything; safe to call after a failed ``start``.

The client directory (its life follows the broker's ``start`` and ``stop``):

- ``client_connected(client_id, client)`` / ``client_disconnected(client_id)``: the hub's
  notice of local clients (synchronous: on the hot path; never awaits). ``client`` is the
  live view of the client (``ConnectedClient``, the hub's subscriber), read later for its
  record; None when there is none to read (then presence does not list the client).
- ``client_exists(client_id)``: whether a client is connected to some instance of the
  cluster (for direct messages). The hub asks only after its own registry said no, so a
  single instance answers False.
- ``cluster_summaries()``: every live instance's summary for ``/stats?scope=cluster``, or
  None when there is no cluster. Each instance describes itself with the ``describe``
  function its backend was created with.
- ``channel_presence(channel, after, limit)``: who holds ``channel`` across the cluster
  (``ChannelPresence``): the streams on it per live instance, and a page of at most
  ``limit`` client records (0: counts only) in client id order, after the client id
  ``after``; None when there is no cluster (the hub's registry is the whole answer).
- ``find_client(client_id)``: the record of a client connected to another live instance,
  or None (a single instance: always None; the hub asks its registry first).

Presence answers are bounded in size (a page) and time (one store call); the records of
another instance may be as old as that backend's refresh allows (its docstring says how).

Mercure subscribers (the subscriptions API; only when ``mercure.subscriptions`` is on):

- ``mercure_subscribed(client_id, subscriber)``: a local client is a Mercure subscriber
  (``MercureSubscriber``), or no longer one (None); synchronous like the notices above.
  A client that disconnects stops being one too.
- ``mercure_subscribers(after, limit)``: one page of the cluster's Mercure subscribers,
  at most ``limit``, in client id order after the client id ``after``, and the id to pass
  for the next page (None: the last). ``find_mercure_subscriber(client_id)``: one of them.
- ``written()``: returns once everything this instance told the directory before the
  call is in the store, so that a reader elsewhere sees it (at once without a store). It
  may wait while the store is unreachable: callers bound it.

The ticket store: ``issue(ticket, patterns, ttl_seconds)`` / ``redeem(ticket)``: one-time
stream tickets, visible to every instance; ``redeem`` returns the ticket's channel
patterns once, within its TTL, and None after that or for an unknown ticket; ``issue``
raises ``TooManyTickets`` past ``limits.max_tickets`` outstanding.

Every question a store cannot answer is ``BrokerUnavailable`` (503).
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sse_hub.messages.message import Draft, Message

Deliver = Callable[[Message], None]
Lost = Callable[[], None]
# Messages read at a time by the default ``find_publisher_id``.
PUBLISHER_ID_SCAN_PAGE = 1000


def nothing_lost() -> None:
    """The default ``lost``: nobody to tell."""


@dataclass(frozen=True, slots=True)
class History:
    """What a reconnecting subscriber is owed.

    ``messages``: retained messages newer than the requested id, in id order.
    ``expired``: some message newer than the requested id is no longer retained.
    ``last_id``: the highest id published so far (0 when none).
    ``complete``: ``messages`` holds every retained message newer than the requested id
    (False when a ``limit`` left some out: read the next page after the last one).
    ``evicted_through``: the highest id these channels no longer hold (0: none), so the
    reader of a paged replay can tell an eviction since its first page from one it was
    told of already (``expired`` is ``evicted_through > after_id``).
    """

    messages: Sequence[Message]
    expired: bool
    last_id: int
    complete: bool = True
    evicted_through: int = 0


class Broker(abc.ABC):
    """See the module docstring for the contract every broker keeps."""

    #: Times the broker re-established its connection (0 for brokers that never lose it).
    reconnects: int = 0
    #: Messages this instance received from other instances through the broker (0 for a
    #: single-instance broker): with routing by interest it stays flat for channels that
    #: have no stream here.
    messages_received: int = 0
    #: Whether ``publish_now`` publishes (True) or always answers None (module docstring).
    publishes_now: bool = False

    @abc.abstractmethod
    async def start(self, deliver: Deliver, lost: Lost = nothing_lost) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def publish(self, drafts: Sequence[Draft]) -> list[Message]: ...

    def publish_now(self, drafts: Sequence[Draft]) -> list[Message] | None:
        """``publish`` without awaiting, or None when this broker must await (module docstring)."""
        return None

    @abc.abstractmethod
    async def history(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History: ...

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        """The channels of ``channels`` that have ended, with their final message's id."""
        return {}

    @property
    @abc.abstractmethod
    def connected(self) -> bool: ...

    async def attach(self, channels: Collection[str]) -> None:
        """Receive ``channels`` from now on (see the module docstring)."""

    def detach(self, channels: Collection[str]) -> None:
        """One ``attach`` of ``channels`` is over."""

    async def find_publisher_id(self, channel: str, event_id: str) -> int | None:
        """The earliest retained message published with ``event_id`` (module docstring)."""
        after_id = 0
        while True:
            page = await self.history((channel,), after_id, limit=PUBLISHER_ID_SCAN_PAGE)
            for message in page.messages:
                if message.mercure is not None and message.mercure.event_id == event_id:
                    return message.id
            if page.complete or not page.messages:
                return None
            after_id = page.messages[-1].id

    def arriving(self) -> asyncio.Future[None] | None:
        """Own messages on their way back (see the module docstring)."""
        return None


# What an instance says about itself to the cluster (``/stats``): a JSON object.
Summary = dict[str, object]


class ConnectedClient(Protocol):
    """What the directory reads of a local client (the hub's ``Subscriber`` is one)."""

    @property
    def ip(self) -> str: ...
    @property
    def channels(self) -> tuple[str, ...]: ...
    @property
    def connected_at(self) -> float: ...
    @property
    def last_activity(self) -> float: ...
    @property
    def messages_sent(self) -> int: ...
    @property
    def bytes_sent(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ClientRecord:
    """A client as the cluster sees it: where it is connected and what it has been sent
    (times in seconds since the epoch)."""

    client_id: str
    instance: str
    ip: str
    channels: tuple[str, ...]
    connected_at: float
    last_activity: float
    messages_sent: int
    bytes_sent: int


@dataclass(frozen=True, slots=True)
class ChannelPresence:
    """Who holds a channel: ``instances`` maps every live instance to its streams on the
    channel (0 included); ``clients`` is one page, in client id order; ``next_after`` the
    client id to pass as ``after`` for the next page (None: this was the last)."""

    instances: Mapping[str, int]
    clients: Sequence[ClientRecord]
    next_after: str | None


@dataclass(frozen=True, slots=True)
class MercureSubscriber:
    """A Mercure stream as the subscriptions API lists it: ``subscriber``, the IRI the hub
    gave it; ``topics``, its selectors as the client sent them; ``payload``, its token's
    ``mercure.payload`` as JSON text (None: none); ``match_types``, each selector's kind
    (``topic``: a draft-07 ``topic=``, ``exact``, ``urlpattern``), beside ``topics``;
    empty: every one a ``topic`` (what a release before them wrote)."""

    subscriber: str
    topics: tuple[str, ...]
    payload: str | None = None
    match_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MercureSubscribers:
    """A page of Mercure subscribers by client id; ``next_after``: None when the last."""

    subscribers: Mapping[str, MercureSubscriber]
    next_after: str | None


class ClientDirectory(abc.ABC):
    """See the module docstring."""

    def client_connected(self, client_id: str, client: ConnectedClient | None = None) -> None:
        """A client connected to this instance (synchronous: called on the hot path)."""

    def client_disconnected(self, client_id: str) -> None:
        """A client left this instance."""

    @abc.abstractmethod
    async def client_exists(self, client_id: str) -> bool: ...

    async def cluster_summaries(self) -> list[Summary] | None:
        return None

    async def channel_presence(self, channel: str, after: str | None, limit: int) -> ChannelPresence | None:
        """Who holds ``channel`` in the cluster; None: no cluster (module docstring)."""
        return None

    async def find_client(self, client_id: str) -> ClientRecord | None:
        """A client connected to another live instance (module docstring)."""
        return None

    @abc.abstractmethod
    def mercure_subscribed(self, client_id: str, subscriber: MercureSubscriber | None) -> None:
        """A local client became a Mercure subscriber, or stopped (module docstring)."""

    @abc.abstractmethod
    async def mercure_subscribers(self, after: str | None, limit: int) -> MercureSubscribers: ...

    @abc.abstractmethod
    async def find_mercure_subscriber(self, client_id: str) -> MercureSubscriber | None: ...

    async def written(self) -> None:
        """Returns once what this instance told the directory is stored (module docstring)."""


class TicketStore(abc.ABC):
    """See the module docstring."""

    @abc.abstractmethod
    async def issue(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None: ...

    @abc.abstractmethod
    async def redeem(self, ticket: str) -> tuple[str, ...] | None: ...


@dataclass(frozen=True, slots=True)
class Backend:
    """A broker and the shared state created with it (module docstring)."""

    broker: Broker
    directory: ClientDirectory
    tickets: TicketStore

"""In-process broker: a counter for ids and a bounded history per channel.

Single instance only. ``publish`` numbers, stores and delivers synchronously, so a
message is in history and handed to the hub before the publisher's response is sent.

Ids survive a restart of the process without reuse: the counter starts at ``origin``, the
wall clock in microseconds when the broker was made, above every id an earlier process
handed out (unless it published more than a million messages a second, or the clock
stepped back across the restart). A resume from an id below the origin is told that
history was lost (``evicted_through``), since the earlier process's messages are gone.

Bounds, each kept in O(1) amortised time with no timer:

- **per channel**: at most ``history_size`` messages (a deque);
- **by age**: a channel with no publish for ``ttl_seconds`` loses its history;
- **by count**: past ``max_channels`` channels with history, the least recently published
  channel loses its history first.

  Channel histories sit in an ``OrderedDict`` in order of last publish (a publish moves
  its channels to the end), so both rules only ever pop from the front. The front is
  checked on every publish and every history read; a channel is popped at most once per
  creation. The global channel ``*`` is a channel like the others. Time is the
  monotonic ``clock`` (injectable, so tests need not sleep).
- **publisher ids**: each channel history indexes its messages that carry a publisher
  id (Mercure updates with their own id), so ``find_publisher_id`` is a dict lookup; the
  index entry leaves with the message it names (trimmed, or its history dropped).
- **ended channels**: a final message marks its channels ended in the same step that
  stores it (``_finished``, in order of ending). A publish naming an ended channel, or one
  an earlier draft of the same call ends, raises ``ChannelFinished`` before anything is
  applied. ``finished_ttl_seconds`` after its final message a channel is forgotten, mark
  and history (its history's last id raising the watermark, as any drop does); the front
  is checked on every publish, history and ``finished`` call.

Its directory and tickets are ``broker/local.py``'s.

``History.expired`` is never False when something was lost (the contract,
``sse_hub/messages/contract.py``), though a dropped history leaves no record of what it
held. Watermarks keep what is needed:

1. each channel history keeps ``evicted_through``, the highest id it trimmed;
2. two watermarks, ``_dropped_through`` (named channels) and ``_global_dropped_through``
   (``*``), keep the highest id of any dropped history of their kind; a history created
   after drops starts with its kind's watermark as ``evicted_through``;
3. a read is expired when a requested channel's ``evicted_through``, or for a channel
   without history its watermark, or the ``origin``, is above ``after_id``.

Why that suffices, and why ``*`` has its own watermark: docs/architecture.md, "History
bounds on the memory broker".
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable, Sequence

from sse_hub.config.settings import HistoryConfig, Settings
from sse_hub.errors import BrokerUnavailable, ChannelFinished
from sse_hub.messages.contract import Broker, Deliver, History, Lost, nothing_lost
from sse_hub.messages.message import GLOBAL_CHANNEL, Draft, Message

_HISTORY_DEFAULTS = HistoryConfig()

Clock = Callable[[], float]


class _ChannelHistory:
    __slots__ = ("evicted_through", "last_id", "messages", "published_at", "publisher_ids")

    def __init__(self, size: int, evicted_through: int, now: float) -> None:
        self.messages: deque[Message] = deque(maxlen=size)
        self.evicted_through = evicted_through
        self.last_id = evicted_through
        self.published_at = now
        #: The retained messages that carry a publisher id (Mercure updates that came
        #: with their own), by that id: their ids, oldest first (a duplicated id
        #: resolves to the earliest retained). Kept with ``messages``, so it is trimmed
        #: and dropped with them.
        self.publisher_ids: dict[str, list[int]] = {}

    def append(self, message: Message, now: float) -> None:
        messages = self.messages
        self.last_id = message.id
        self.published_at = now
        if messages.maxlen == 0:
            self.evicted_through = message.id
            return
        if len(messages) == messages.maxlen:
            evicted = messages[0]
            self.evicted_through = evicted.id
            self._unindex(evicted)
        messages.append(message)
        if message.mercure is not None and message.mercure.event_id is not None:
            self.publisher_ids.setdefault(message.mercure.event_id, []).append(message.id)

    def _unindex(self, evicted: Message) -> None:
        event_id = evicted.mercure.event_id if evicted.mercure is not None else None
        if event_id is None:
            return
        ids = self.publisher_ids[event_id]
        del ids[0]  # the evicted message is the oldest retained, so the first listed
        if not ids:
            del self.publisher_ids[event_id]

    def since(self, after_id: int) -> list[Message]:
        """Messages newer than ``after_id``; walks from the newest end, so a client that is
        only a few messages behind costs a few steps, not the whole deque."""
        newer: list[Message] = []
        for message in reversed(self.messages):
            if message.id <= after_id:
                break
            newer.append(message)
        newer.reverse()
        return newer


class MemoryBroker(Broker):
    def __init__(
        self,
        history_size: int = _HISTORY_DEFAULTS.size,
        *,
        ttl_seconds: float = _HISTORY_DEFAULTS.ttl_seconds,
        max_channels: int = _HISTORY_DEFAULTS.max_channels,
        clock: Clock = time.monotonic,
        origin: int | None = None,
        finished_ttl_seconds: float = _HISTORY_DEFAULTS.finished_ttl_seconds,
    ) -> None:
        self._history_size = history_size
        self._ttl_seconds = ttl_seconds
        self._finished_ttl_seconds = finished_ttl_seconds
        # Ended channels: their final message's id and when it was stored, oldest first.
        self._finished: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._max_channels = max_channels
        self._clock = clock
        self._channels: OrderedDict[str, _ChannelHistory] = OrderedDict()
        self._dropped_through = 0
        self._global_dropped_through = 0
        #: Every id of this broker is above it (module docstring).
        self.origin = time.time_ns() // 1000 if origin is None else origin
        self._last_id = 0
        self._deliver: Deliver | None = None

    @classmethod
    def from_settings(cls, settings: Settings, clock: Clock = time.monotonic) -> MemoryBroker:
        history = settings.history
        return cls(
            history.size,
            ttl_seconds=history.ttl_seconds,
            max_channels=history.max_channels,
            clock=clock,
            finished_ttl_seconds=history.finished_ttl_seconds,
        )

    async def start(self, deliver: Deliver, lost: Lost = nothing_lost) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    @property
    def connected(self) -> bool:
        return self._deliver is not None

    @property
    def channels_with_history(self) -> int:
        """Channel histories held now (at most ``max_channels``)."""
        return len(self._channels)

    publishes_now = True

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        return self.publish_now(drafts)

    def publish_now(self, drafts: Sequence[Draft]) -> list[Message]:
        deliver = self._deliver
        if deliver is None:
            raise BrokerUnavailable("the broker is not running")
        now = self._clock()
        self._drop_stale(now)
        self._refuse_ended(drafts)
        messages = []
        for draft in drafts:
            self._last_id = max(self._last_id, self.origin) + 1
            message = draft.numbered(self._last_id)
            for channel in message.channels:
                self._channel(channel, now).append(message, now)
                if message.final:
                    self._finished[channel] = (message.id, now)
            messages.append(message)
        for message in messages:
            deliver(message)
        return messages

    async def finished(self, channels: Collection[str]) -> dict[str, int]:
        self._drop_stale(self._clock())
        ended = self._finished
        return {channel: ended[channel][0] for channel in channels if channel in ended}

    async def history(self, channels: Iterable[str], after_id: int, limit: int | None = None) -> History:
        self._drop_stale(self._clock())
        # An id from before the origin may name messages of an earlier process (0 names none).
        evicted_through = self.origin if after_id > 0 else 0
        runs = []
        for channel in channels:
            stored = self._channels.get(channel)
            if stored is None:
                evicted_through = max(evicted_through, self._watermark(channel))
                continue
            evicted_through = max(evicted_through, stored.evicted_through)
            runs.append(stored.since(after_id))
        expired = evicted_through > after_id
        merged: list[Message] = []
        for message in heapq.merge(*runs, key=lambda m: m.id):
            if not merged or merged[-1].id != message.id:
                if limit is not None and len(merged) == limit:
                    return History(merged, expired, self._last_id, complete=False, evicted_through=evicted_through)
                merged.append(message)
        return History(merged, expired, self._last_id, evicted_through=evicted_through)

    async def find_publisher_id(self, channel: str, event_id: str) -> int | None:
        """From the channel history's index (``_ChannelHistory.publisher_ids``), no scan."""
        self._drop_stale(self._clock())
        stored = self._channels.get(channel)
        ids = stored.publisher_ids.get(event_id) if stored is not None else None
        return ids[0] if ids else None

    def _channel(self, name: str, now: float) -> _ChannelHistory:
        channels = self._channels
        stored = channels.get(name)
        if stored is not None:
            channels.move_to_end(name)
            return stored
        if len(channels) >= self._max_channels:
            self._drop_oldest()
        stored = channels[name] = _ChannelHistory(self._history_size, self._watermark(name), now)
        return stored

    def _refuse_ended(self, drafts: Sequence[Draft]) -> None:
        """``ChannelFinished`` when a draft names a channel that has ended, or that an
        earlier draft of the same call ends (checked before anything is applied)."""
        ending: set[str] = set()
        for draft in drafts:
            for channel in draft.channels:
                if channel in self._finished or channel in ending:
                    raise ChannelFinished(channel)
            if draft.final:
                ending.update(draft.channels)

    def _drop_stale(self, now: float) -> None:
        """Forget, oldest first, every channel that ended ``finished_ttl_seconds`` ago, then
        drop every history with no publish for ``ttl_seconds``."""
        finished = self._finished
        forget_before = now - self._finished_ttl_seconds
        while finished and next(iter(finished.values()))[1] <= forget_before:
            name, _ = finished.popitem(last=False)
            if name in self._channels:
                self._drop(name, self._channels.pop(name))
        deadline = now - self._ttl_seconds
        channels = self._channels
        while channels and next(iter(channels.values())).published_at <= deadline:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        self._drop(*self._channels.popitem(last=False))

    def _drop(self, name: str, stored: _ChannelHistory) -> None:
        """A dropped history's last id raises its kind's watermark (module docstring)."""
        if name == GLOBAL_CHANNEL:
            self._global_dropped_through = max(self._global_dropped_through, stored.last_id)
        else:
            self._dropped_through = max(self._dropped_through, stored.last_id)

    def _watermark(self, channel: str) -> int:
        return self._global_dropped_through if channel == GLOBAL_CHANNEL else self._dropped_through

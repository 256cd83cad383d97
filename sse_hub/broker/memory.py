"""In-process broker: a counter for ids, a bounded deque per channel for history.

Single instance only. ``publish`` numbers, stores and delivers synchronously, so a
message is in history and handed to the hub before the publisher's response is sent.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Iterable, Sequence

from sse_hub.broker import Broker, Deliver, History
from sse_hub.errors import BrokerUnavailable
from sse_hub.models import Draft, Message

# Expired tickets are dropped when this many are outstanding (they are single-use and short-lived).
TICKET_SWEEP_THRESHOLD = 10_000


class _ChannelHistory:
    __slots__ = ("max_evicted_id", "messages")

    def __init__(self, size: int) -> None:
        self.messages: deque[Message] = deque(maxlen=size)
        self.max_evicted_id = 0

    def append(self, message: Message) -> None:
        messages = self.messages
        if messages.maxlen == 0:
            self.max_evicted_id = message.id
            return
        if len(messages) == messages.maxlen:
            self.max_evicted_id = messages[0].id
        messages.append(message)

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
    def __init__(self, history_size: int) -> None:
        self._history_size = history_size
        self._channels: dict[str, _ChannelHistory] = {}
        self._last_id = 0
        self._deliver: Deliver | None = None
        self._tickets: dict[str, tuple[tuple[str, ...], float]] = {}

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver

    async def stop(self) -> None:
        self._deliver = None

    @property
    def connected(self) -> bool:
        return self._deliver is not None

    async def publish(self, drafts: Sequence[Draft]) -> list[Message]:
        deliver = self._deliver
        if deliver is None:
            raise BrokerUnavailable("the broker is not running")
        messages = []
        for draft in drafts:
            self._last_id += 1
            message = draft.numbered(self._last_id)
            for channel in message.channels:
                self._channel(channel).append(message)
            messages.append(message)
        for message in messages:
            deliver(message)
        return messages

    async def history(self, channels: Iterable[str], after_id: int) -> History:
        expired = False
        runs = []
        for channel in channels:
            stored = self._channels.get(channel)
            if stored is None:
                continue
            expired = expired or stored.max_evicted_id > after_id
            runs.append(stored.since(after_id))
        merged: list[Message] = []
        for message in heapq.merge(*runs, key=lambda m: m.id):
            if not merged or merged[-1].id != message.id:
                merged.append(message)
        return History(messages=merged, expired=expired, last_id=self._last_id)

    async def client_exists(self, client_id: str) -> bool:
        return False

    async def issue_ticket(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None:
        now = time.monotonic()
        if len(self._tickets) >= TICKET_SWEEP_THRESHOLD:
            self._tickets = {key: value for key, value in self._tickets.items() if value[1] > now}
        self._tickets[ticket] = (patterns, now + ttl_seconds)

    async def redeem_ticket(self, ticket: str) -> tuple[str, ...] | None:
        entry = self._tickets.pop(ticket, None)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def _channel(self, name: str) -> _ChannelHistory:
        stored = self._channels.get(name)
        if stored is None:
            stored = self._channels[name] = _ChannelHistory(self._history_size)
        return stored

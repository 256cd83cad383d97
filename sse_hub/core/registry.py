"""The hub's open subscribers: by client id, by channel and per address.

It answers fan-out (``on_channel``, ``all``), direct messages and kicks (``get``), and the
connection limits (``len``, ``count_for_ip``).

Invariants:

1. Only ``Hub.open`` adds (before the stream's response headers go out) and only
   ``Hub.release`` removes (once per subscriber: the stream handler's ``finally`` before
   the handover, the ``StreamProtocol`` after it). A closed subscriber stays registered
   until then, and fan-out never adds or removes, so ``Fanout.dispatch`` may iterate the
   sets in place; iterating the registry itself walks a copy.
2. Bounded by the open streams: a channel or an address with no subscriber left has no
   entry.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator

from sse_hub.core.subscriber import Subscriber

_EMPTY: frozenset[Subscriber] = frozenset()


class Registry:
    def __init__(self) -> None:
        self._by_id: dict[str, Subscriber] = {}
        self._by_channel: dict[str, set[Subscriber]] = {}
        self._per_ip: dict[str, int] = {}

    def add(self, subscriber: Subscriber) -> None:
        self._by_id[subscriber.client_id] = subscriber
        for channel in subscriber.channels:
            self._by_channel.setdefault(channel, set()).add(subscriber)
        self._per_ip[subscriber.ip] = self._per_ip.get(subscriber.ip, 0) + 1

    def remove(self, subscriber: Subscriber) -> None:
        if self._by_id.pop(subscriber.client_id, None) is None:
            return
        for channel in subscriber.channels:
            members = self._by_channel.get(channel)
            if members is not None:
                members.discard(subscriber)
                if not members:
                    del self._by_channel[channel]
        left = self._per_ip[subscriber.ip] - 1
        if left:
            self._per_ip[subscriber.ip] = left
        else:
            del self._per_ip[subscriber.ip]

    def get(self, client_id: str) -> Subscriber | None:
        return self._by_id.get(client_id)

    def on_channel(self, channel: str) -> Collection[Subscriber]:
        return self._by_channel.get(channel, _EMPTY)

    def all(self) -> Collection[Subscriber]:
        return self._by_id.values()

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Subscriber]:
        return iter(list(self._by_id.values()))

    def count_for_ip(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def channel_counts(self) -> dict[str, int]:
        return {channel: len(members) for channel, members in sorted(self._by_channel.items())}

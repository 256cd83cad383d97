"""Which local Mercure subscribers an update goes to: an index used only for Mercure messages.

The hub's channel fan-out hands a message to every subscriber of its channels with no
per-subscriber test. Mercure needs one (private updates, templates, URL patterns), so its
updates take this separate path and plain channels pay nothing for it.

- Subscribers with only exact selectors are indexed by topic: an update looks up each of
  its topics (canonical and alternates), a dict lookup per topic.
- Subscribers with ``*``, templates or URL patterns are kept in a list and tested one by one
  (``SelectorSet.matches_any``, linear-time matchers behind bounded caches).
- ``interest`` names what a subscriber's stream attaches on the broker (routing by
  interest between instances): the routing names of its exact topics
  (``messages.mercure.route_channel``), or the shared feed when it has ``*``, a template
  or a URL pattern, which any topic may match. Computed once, when it is added.
- Every candidate then passes ``should_deliver`` (selection and, for a private update, the
  grant), once per update, even when several of its topics match: an update reaches a
  subscriber at most once.

Invariants: ``targets`` is synchronous and never awaits (it runs inside ``Fanout.dispatch``);
``add`` happens before the stream's headers go out and ``remove`` in the stream's
``finally``; the index never holds a subscriber after ``remove``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.selectors import EMPTY, SelectorSet, should_deliver
from sse_hub.messages.mercure import FEED_CHANNEL, route_channel

S = TypeVar("S", bound=Hashable)


@dataclass(frozen=True, slots=True)
class _Entry:
    subscription: SelectorSet
    grant: SelectorSet  # the token's subscribe selectors; EMPTY when anonymous
    # The grant the stream was opened with (payload, expiry); None when anonymous.
    token_grant: MercureGrant | None
    interest: tuple[str, ...]  # what the stream attaches on the broker


def interest(subscription: SelectorSet) -> tuple[str, ...]:
    """The broker channels that carry every update ``subscription`` may match."""
    if subscription.has_patterns:
        return (FEED_CHANNEL,)
    return tuple(dict.fromkeys(map(route_channel, subscription.exact_topics)))


class MercureIndex(Generic[S]):
    """Local Mercure subscribers, by exact topic and by pattern."""

    def __init__(self) -> None:
        self._entries: dict[S, _Entry] = {}
        self._by_topic: dict[str, set[S]] = {}
        self._patterned: dict[S, None] = {}  # insertion-ordered set

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, subscriber: object) -> bool:
        return subscriber in self._entries

    def add(self, subscriber: S, subscription: SelectorSet, grant: MercureGrant | None) -> None:
        if subscriber in self._entries:
            raise ValueError("this subscriber is already in the index")
        allowed = EMPTY if grant is None else grant.subscribe
        self._entries[subscriber] = _Entry(subscription, allowed, grant, interest(subscription))
        if subscription.has_patterns:
            self._patterned[subscriber] = None
        for topic in subscription.exact_topics:
            self._by_topic.setdefault(topic, set()).add(subscriber)

    def remove(self, subscriber: S) -> None:
        entry = self._entries.pop(subscriber, None)
        if entry is None:
            return
        self._patterned.pop(subscriber, None)
        for topic in entry.subscription.exact_topics:
            holders = self._by_topic.get(topic)
            if holders is not None:
                holders.discard(subscriber)
                if not holders:
                    del self._by_topic[topic]

    def interest(self, subscriber: S) -> tuple[str, ...]:
        """What ``subscriber``'s stream attaches on the broker (module docstring)."""
        return self._entries[subscriber].interest

    def targets(self, topics: Sequence[str], private: bool) -> list[S]:
        """The subscribers this update is for, each once."""
        candidates: dict[S, None] = dict.fromkeys(self._patterned)
        for topic in topics:
            holders = self._by_topic.get(topic)
            if holders:
                candidates.update(dict.fromkeys(holders))
        entries = self._entries
        return [
            subscriber
            for subscriber in candidates
            if should_deliver(topics, private, entries[subscriber].subscription, entries[subscriber].grant)
        ]

    def accepts(self, subscriber: S, topics: Sequence[str], private: bool) -> bool:
        """Whether a retained update may be replayed to ``subscriber`` (its current grant)."""
        entry = self._entries.get(subscriber)
        return entry is not None and should_deliver(topics, private, entry.subscription, entry.grant)

"""The hub's index of Mercure subscribers: Mercure's own when Mercure is on, loaded only
then (with the selector engines it needs, RE2 and URL patterns), else an empty stand-in
that holds no subscriber, so a hub without Mercure pays one empty check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sse_hub.core.subscriber import Subscriber

if TYPE_CHECKING:
    from sse_hub.mercure.fanout import MercureIndex
    from sse_hub.mercure.grants import MercureGrant
    from sse_hub.mercure.selectors import SelectorSet


def mercure_index(enabled: bool) -> MercureIndex[Subscriber] | NoMercure:
    if not enabled:
        return NoMercure()
    from sse_hub.mercure.fanout import MercureIndex

    return MercureIndex()


class NoMercure:
    """The index of a hub with Mercure off: it holds no subscriber."""

    def __bool__(self) -> bool:
        return False

    def __contains__(self, subscriber: object) -> bool:
        return False

    def remove(self, subscriber: Subscriber) -> None:
        """Nothing to forget."""

    def add(self, subscriber: Subscriber, subscription: SelectorSet, grant: MercureGrant | None) -> None:
        raise RuntimeError("Mercure is off (mercure.enabled)")

    def interest(self, subscriber: Subscriber) -> tuple[str, ...]:
        raise KeyError(subscriber)

    def accepts(self, subscriber: Subscriber, topics: Sequence[str], private: bool) -> bool:
        return False

    def targets(self, topics: Sequence[str], private: bool) -> list[Subscriber]:
        return []

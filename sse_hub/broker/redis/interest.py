"""Routing by interest, the counting part: how many streams hold each channel, and since
when a channel nobody holds any more has lingered.

Shared by the standalone listener (``listener``) and the sharded broker's subscriptions
(``sharded/subscriptions``), which differ only in how they subscribe.

Invariants: a channel is either held (count >= 1) or lingering (since the loop time its
last holder left), never both; ``expired`` hands each lingering channel out once, oldest
first, and forgets it.
"""

from __future__ import annotations

from collections.abc import Collection


class Interest:
    __slots__ = ("_lingering", "_refs")

    def __init__(self) -> None:
        self._refs: dict[str, int] = {}
        self._lingering: dict[str, float] = {}  # channel -> loop time its last holder left

    def hold(self, channel: str) -> None:
        """One more stream holds ``channel`` (it stops lingering)."""
        self._refs[channel] = self._refs.get(channel, 0) + 1
        self._lingering.pop(channel, None)

    def release(self, channels: Collection[str], now: float) -> None:
        """One ``hold`` of each of ``channels`` is over; the last one starts its linger."""
        for channel in channels:
            count = self._refs.get(channel, 0)
            if count > 1:
                self._refs[channel] = count - 1
            elif count == 1:
                del self._refs[channel]
                self._lingering[channel] = now

    def holders(self, channel: str) -> int:
        return self._refs.get(channel, 0)

    @property
    def lingering(self) -> int:
        """How many channels nobody holds are still lingering."""
        return len(self._lingering)

    def expired(self, deadline: float) -> list[str]:
        """The channels lingering since before ``deadline``, forgotten from here on.
        Insertion order is the order their last streams left: stop at the first young one."""
        lingering = self._lingering
        gone: list[str] = []
        while lingering:
            channel, since = next(iter(lingering.items()))
            if since > deadline:
                break
            del lingering[channel]
            gone.append(channel)
        return gone

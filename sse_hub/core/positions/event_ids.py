"""A stream's position in each of its channels, and the SSE id that carries it (sharded broker).

With ``broker.backend: redis-cluster`` (sharded), each channel numbers its own messages
(``seq`` from 1, plus a 4-character ``epoch`` that changes when Redis lost the counter and
it started again), so no single integer can say where a stream on several channels is.
A stream's position is one ``Position`` per channel it holds, the global channel ``*``
included, and its events carry all of them (as nchan does for multiplexed channels):

    <list>.<c_1>.<c_2>...<c_n>.<g>

- ``list``: 4 base36 characters, a checksum of the stream's channels (sorted, without
  ``*``): an id from a stream on other channels is refused (``event: reset``);
- ``c_i``: the stream's position in its i-th channel (sorted order), ``0`` for none yet, else
  the seq in base36 followed by the 4-character epoch (``1ak2x9``: seq 46, epoch ``k2x9``);
- ``g``: the position in the global channel. A receipt (``POST /broadcast``) leaves it out;
  a stream resumed from an id without it resumes global messages from now.

A publish to channels of several partitions goes out as several parts, in order, each
carrying the positions of the parts before it (``Message.prior``). A stream takes a message
from its first part that is on one of its channels, and skips the later ones (they still
move its position on) so a message on several of a stream's channels arrives once, live or
replayed, whatever order the parts arrive in.

Invariants: a position only moves forward on a channel (or to a new epoch); ``take`` decides
from the message and the position alone, so a replay read after a reconnect makes the same
choice the live stream made.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping
from functools import lru_cache

from sse_hub.messages.message import GLOBAL_CHANNEL, Message
from sse_hub.messages.positions import NOWHERE, Position

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_COMPONENT = re.compile(r"0|([0-9a-z]{1,12})([0-9a-z]{4})")
_CHECKSUM_SPACE = 36**4


def base36(number: int) -> str:
    digits = []
    while True:
        number, digit = divmod(number, 36)
        digits.append(_DIGITS[digit])
        if not number:
            return "".join(reversed(digits))


def list_checksum(channels: Iterable[str]) -> str:
    """4 base36 characters naming a sorted channel list (``*`` left out)."""
    value = zlib.crc32("\n".join(("v1", *channels)).encode()) % _CHECKSUM_SPACE
    return base36(value).rjust(4, "0")


@lru_cache(maxsize=4096)
def component(position: Position) -> str:
    """``position`` as it is written in an id. Cached: in a fan-out every stream of a
    channel writes the same new position (and the same global one), once per stream."""
    seq, epoch = position
    return "0" if seq == 0 else base36(seq) + epoch


def parse_component(text: str) -> Position | None:
    match = _COMPONENT.fullmatch(text)
    if match is None:
        return None
    if text == "0":
        return NOWHERE
    seq = int(match[1], 36)
    return (seq, match[2]) if seq > 0 else None


def receipt_id(message: Message) -> str:
    """The id of a publish (``POST /broadcast``): what a stream on exactly its channels
    shows for it, without the global component (module docstring)."""
    positions = {channel: (seq, epoch) for channel, seq, epoch in message.pos}
    if message.channels == (GLOBAL_CHANNEL,):
        return f"{list_checksum(())}.{component(positions.get(GLOBAL_CHANNEL, NOWHERE))}"
    order = sorted(message.channels)
    return ".".join((list_checksum(order), *(component(positions.get(channel, NOWHERE)) for channel in order)))


class StreamPosition:
    """Where one stream is in each of its channels (module docstring)."""

    __slots__ = ("_at", "_checksum", "_id", "order")

    def __init__(self, channels: Iterable[str], at: Mapping[str, Position]) -> None:
        self.order = tuple(sorted(set(channels) - {GLOBAL_CHANNEL}))
        self._checksum = list_checksum(self.order)
        self._at = {channel: at.get(channel, NOWHERE) for channel in (*self.order, GLOBAL_CHANNEL)}
        self._id: str | None = None

    def parse(self, value: str, current: Mapping[str, Position]) -> dict[str, Position] | None:
        """The positions a ``Last-Event-ID`` names for this stream's channels (the global one
        from ``current`` when the id leaves it out), or None when it is not such an id."""
        checksum, _, rest = value.partition(".")
        texts = rest.split(".") if rest else []
        if checksum != self._checksum or len(texts) not in (len(self.order), len(self.order) + 1):
            return None
        parsed: list[Position] = []
        for text in texts:
            position = parse_component(text)
            if position is None:
                return None
            parsed.append(position)
        positions = dict(zip(self.order, parsed, strict=False))
        n = len(self.order)
        positions[GLOBAL_CHANNEL] = parsed[n] if len(parsed) > n else current.get(GLOBAL_CHANNEL, NOWHERE)
        return positions

    def move_to(self, positions: Mapping[str, Position]) -> None:
        """Put the stream at ``positions`` (a resume), whatever it was at."""
        for channel, position in positions.items():
            if channel in self._at:
                self._at[channel] = position
        self._id = None

    def take(self, message: Message) -> bool:
        """Move past ``message``; True when the stream should send it: it is new on one
        of the stream's channels and no earlier part of it was on one of them."""
        at = self._at
        fresh = False
        for channel, seq, epoch in message.pos:
            held = at.get(channel)
            if held is not None and (seq > held[0] or epoch != held[1]):
                at[channel] = (seq, epoch)
                fresh = True
        if not fresh:
            return False
        self._id = None
        prior = message.prior
        return not prior or not any(channel in at for channel, _, _ in prior)

    def snapshot(self) -> dict[str, Position]:
        return dict(self._at)

    @property
    def event_id(self) -> str:
        event_id = self._id
        if event_id is None:
            # _at holds the stream's channels in order, then the global one (__init__).
            event_id = self._id = ".".join((self._checksum, *map(component, self._at.values())))
        return event_id

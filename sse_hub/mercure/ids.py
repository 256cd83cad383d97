"""Mercure event ids: the hub's own ids, publisher-supplied ids, and cursors into the history.

Mercure ids are cursors into one hub-wide sequence (a reconnecting subscriber sends the
last id it saw and gets every later update). sse-hub already numbers every message with
one cluster-wide integer sequence; a Mercure update is given the next number like any
message, and its id is chosen as follows:

- Hub-assigned ids are the fragment form ``#<n>``, ``n`` the hub sequence in decimal
  without leading zeros: a valid IRI reference (draft-07 and 1.0 both allow "a relative
  URI composed of a fragment"), never a bare decimal, and it keeps the global order.
  Parsing it back needs no lookup. On the sharded Redis Cluster broker there is no hub
  sequence: the feed channel numbers its own updates, and the hub id is its position
  there, ``#<seq>.<epoch>`` (``seq`` in decimal, ``epoch`` the channel's 4 base36
  characters, which change when Redis lost the counter and it started again); it parses
  back to that position (``Cursor.position``). Each form is unknown to the other scheme.
- A publisher may supply its own id. It is sent verbatim as the SSE ``id:`` (Mercure's
  conformance suite checks ``lastEventId``) and returned as the publish answer. It may
  not start with ``#`` (both specs), so it can never be mistaken for a hub id; it may not
  be ``earliest`` (the reserved cursor), nor carry CR, LF or NUL (SSE framing).
- A cursor that is neither ``earliest`` nor a hub id is a publisher id, resolved by
  scanning the retained history (``mercure/replay.py``): the earliest publication wins
  (1.0: "a duplicated id resolves to the earliest").

Replay and the response header (``Last-Event-ID`` in draft-07, ``Mercure-Last-Event-ID``
in 1.0): when the cursor resolves to a sequence the hub still covers, replay starts after
it and the header repeats the cursor; otherwise (``earliest``, an unknown or evicted id,
an id from the future, an empty history) replay starts at the oldest retained update and
the header says ``earliest``: that header is Mercure's only loss signal.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from sse_hub.messages.mercure import EARLIEST

_HUB_ID = re.compile(r"#([1-9][0-9]{0,18})")
_HUB_POSITION = re.compile(r"#([1-9][0-9]{0,18})\.([0-9a-z]{4})")


class CursorKind(enum.Enum):
    EARLIEST = "earliest"
    HUB = "hub"
    PUBLISHER = "publisher"


@dataclass(frozen=True, slots=True)
class Cursor:
    """A parsed ``Last-Event-ID``: a hub id has ``sequence`` (``#<n>``, one sequence) or
    ``position`` (``#<seq>.<epoch>``, the sharded broker's feed position)."""

    kind: CursorKind
    value: str
    sequence: int | None = None
    position: tuple[int, str] | None = None


def parse_cursor(value: str) -> Cursor:
    if value == EARLIEST:
        return Cursor(CursorKind.EARLIEST, value)
    found = _HUB_ID.fullmatch(value)
    if found is not None:
        return Cursor(CursorKind.HUB, value, int(found.group(1)))
    found = _HUB_POSITION.fullmatch(value)
    if found is not None:
        return Cursor(CursorKind.HUB, value, position=(int(found.group(1)), found.group(2)))
    return Cursor(CursorKind.PUBLISHER, value)


def resume_after(cursor: Cursor, resolved: int | None, last_sequence: int) -> int | None:
    """The sequence after which replay starts, or None for "from the oldest retained".

    ``resolved``: the publisher-id index's answer for a publisher cursor (ignored for the
    other kinds); ``last_sequence``: the highest sequence the hub has assigned.
    """
    if cursor.kind is CursorKind.EARLIEST:
        return None
    sequence = cursor.sequence if cursor.kind is CursorKind.HUB else resolved
    if sequence is None or sequence > last_sequence:
        return None  # unknown, or from the future (another hub, a wiped store)
    return sequence


def response_cursor(cursor: Cursor, after: int | None, *, expired: bool, history_empty: bool) -> str:
    """The response header's value: the cursor when replay continues exactly after it,
    else ``earliest``. ``expired``: some update newer than ``after`` was evicted;
    ``history_empty``: the hub retains no update at all."""
    if after is None or expired or history_empty:
        return EARLIEST
    return cursor.value

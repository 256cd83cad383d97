"""History stream entries (``P:history:{channel}``, see ``keyspace``) as messages.

An entry is ``{message id}-0`` with field ``m`` (the payload), plus ``f`` on a channel's
final message (its final mark, ``scripts`` invariant 6), or a marker with field ``d``.
Invariants: markers never become messages; a malformed entry is logged (without its
payload) and skipped, never fatal; merged runs hold each id once, in id order.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Sequence

from pydantic import ValidationError

from sse_hub.broker.redis.scripts import describe
from sse_hub.messages.message import Message, message_from_payload

logger = logging.getLogger(__name__)


Entry = tuple[bytes, dict[bytes, bytes]]


def script_entries(raw: Sequence[Sequence[object]]) -> list[Entry]:
    """Stream entries as a script returns them (``[id, [field, value, ...]]``)."""
    entries: list[Entry] = []
    for item in raw:
        entry_id, flat = item[0], item[1]
        if not isinstance(entry_id, bytes) or not isinstance(flat, list):
            continue
        entries.append((entry_id, dict(zip(flat[::2], flat[1::2], strict=True))))
    return entries


def entry_id(entry: Entry) -> int:
    """The message id of a history entry (stream ids are ``{message id}-0``)."""
    return int(entry[0].partition(b"-")[0])


def is_final(entry: Entry) -> bool:
    """The entry of a channel's final message (it holds the final mark, field ``f``)."""
    return b"f" in entry[1]


def is_marker(entry: Entry) -> bool:
    """The entry a stream starts with when older histories may have expired (field ``d``)."""
    return b"d" in entry[1]


def parse_entries(entries: Iterable[Entry]) -> list[Message]:
    """Stream entries (oldest first) as messages; markers are skipped, malformed entries
    logged and skipped."""
    messages = []
    for entry_id, fields in entries:
        if b"d" in fields:
            continue
        try:
            messages.append(message_from_payload(fields[b"m"]))
        except (KeyError, ValidationError) as exc:
            logger.warning("skipping malformed history entry %s: %s", entry_id.decode(errors="replace"), describe(exc))
    return messages


def merge_runs(runs: Iterable[Sequence[Message]]) -> list[Message]:
    """Merge id-ordered runs into one, keeping each id once (a message on two channels is
    stored in both streams)."""
    merged: list[Message] = []
    for message in heapq.merge(*runs, key=lambda message: message.id):
        if not merged or merged[-1].id != message.id:
            merged.append(message)
    return merged

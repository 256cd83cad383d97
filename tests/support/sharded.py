"""The sharded Redis Cluster broker seen from a test: the slot and master of a channel,
channels spread over every master, the positions a receipt names, the seqs of a channel's
parts in what a broker delivered."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from redis.crc import key_slot

from sse_hub.broker.sharded.keys import ShardKeys
from sse_hub.core.positions.event_ids import list_checksum, parse_component
from sse_hub.messages.message import Message
from tests.support.redis_cluster import Cluster


def seqs(delivered: Iterable[Message], channel: str) -> list[int]:
    """The seqs ``channel``'s parts were delivered with, in delivery order."""
    return [seq for message in delivered for name, seq, _ in message.pos if name == channel]


def slot_of(prefix: str, channel: str) -> int:
    """The slot of a channel's keys and shard channel (one slot: ``ShardKeys``)."""
    keys = ShardKeys(prefix)
    slots = {
        key_slot(name.encode()) for name in (keys.meta(channel), keys.stream(channel), keys.shard_channel(channel))
    }
    assert len(slots) == 1, f"{channel}'s names are in several slots: {slots}"
    return slots.pop()


def master_of(cluster: Cluster, prefix: str, channel: str) -> int:
    """The port of the master that serves ``channel``, from the cluster's slot map."""
    return cluster.owner_of(slot_of(prefix, channel)).port


def spread_channels(cluster: Cluster, prefix: str, count: int, stem: str = "feed") -> list[str]:
    """``count`` channel names, taken in turn from each master's share (so they cover
    every master, as evenly as ``count`` allows), read off one ``CLUSTER SLOTS`` reply."""
    reply = cluster.nodes[0].client().execute_command("CLUSTER SLOTS")
    slot_map = [(int(start), int(end), int(master[1])) for start, end, master, *_ in reply]
    masters = sorted({port for *_, port in slot_map})
    by_master: dict[int, list[str]] = {port: [] for port in masters}
    for n in range(2000):
        name = f"{stem}.{n}"
        slot = slot_of(prefix, name)
        by_master[next(port for start, end, port in slot_map if start <= slot <= end)].append(name)
        if all(len(names) >= count for names in by_master.values()):
            break
    chosen = [by_master[masters[k % len(masters)]][k // len(masters)] for k in range(count)]
    assert all(master_of(cluster, prefix, name) == port for port, names in by_master.items() for name in names[:1])
    return chosen


def receipt_positions(receipt: dict[str, Any]) -> dict[str, tuple[int, str]]:
    """The position a receipt names in each of its channels: ``<checksum>.<c_1>...<c_n>`` over
    the sorted channels, without the global part (``positions.receipt_id``)."""
    checksum, *parts = str(receipt["id"]).split(".")
    channels = sorted(receipt["channels"])
    assert checksum == list_checksum(channels) and len(parts) == len(channels), receipt
    positions = {channel: parse_component(part) for channel, part in zip(channels, parts, strict=True)}
    assert all(position is not None and position[0] > 0 for position in positions.values()), receipt
    return {channel: position for channel, position in positions.items() if position is not None}

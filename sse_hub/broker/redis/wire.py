"""The wire version an instance announces at the head of its summary, and whether two
releases can share one Redis under one prefix (``keyspace``, "Wire version").

Invariant: pure; ``directory`` reads the heads and judges the cluster with these.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sse_hub.broker.redis.keyspace import COMPATIBLE_WIRE_VERSIONS, WIRE_VERSION
from sse_hub.messages.contract import Summary

# The first bytes of a summary, which announce its wire version (``keyspace``).
SUMMARY_HEAD_BYTES = 256
_ANNOUNCED_VERSION = re.compile(rb'\{"wire_version":([0-9]{1,9})')
_ANNOUNCED_COMPATIBLE = re.compile(rb',"wire_compatible":\[([0-9,]*)\]')


@dataclass(frozen=True, slots=True)
class WireVersion:
    """A wire version and the versions it works beside (its own included)."""

    version: int
    compatible: frozenset[int]

    def works_beside(self, other: WireVersion) -> bool:
        """Either side lists the other: the newer release is the one that knows."""
        return other.version in self.compatible or self.version in other.compatible


OURS = WireVersion(WIRE_VERSION, COMPATIBLE_WIRE_VERSIONS | {WIRE_VERSION})


def announced_wire(head: bytes) -> WireVersion:
    """The wire version a summary's head announces; 1 when it announces none (ab801b8).
    A list of compatible versions cut off by the head's length counts as empty."""
    found = _ANNOUNCED_VERSION.match(head)
    if found is None:
        return WireVersion(1, frozenset({1}))
    version = int(found[1])
    listed = _ANNOUNCED_COMPATIBLE.match(head, found.end())
    compatible = {int(item) for item in listed[1].split(b",") if item} if listed else set()
    return WireVersion(version, frozenset({version, *compatible}))


def announcement() -> Summary:
    """The head of this instance's summary: its wire version, then what it works beside."""
    return {"wire_version": OURS.version, "wire_compatible": sorted(OURS.compatible)}

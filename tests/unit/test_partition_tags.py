"""The partition tag table (``sse_hub.broker.sharded.partition_tags``), computed at import:
pinned by a checksum, since every key the sharded broker ever wrote is named after it, and
re-derived on a sample with redis-py's own ``key_slot`` to show the rule it follows."""

from __future__ import annotations

import hashlib
import itertools
import random
import string

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from sse_hub.broker.sharded.partition_tags import TAGS
from sse_hub.broker.sharded.partitions import PARTITIONS, partition_slot

# sha256 of "\n".join(TAGS), as committed in the generated table this replaced. A change
# here moves every channel's keys to another slot: never update it to make a test pass.
TAGS_SHA256 = "fdecde24bd0841bca7e540587e278b9bd62824f7a5368c21ce9d6dee227ea0d1"

ALPHABET = string.digits + string.ascii_lowercase


def shortest_tag_for_slot(slot: int) -> str:
    """The first string over ``0-9a-z`` in (length, lexicographic) order with ``slot``."""
    for length in itertools.count(1):
        for letters in itertools.product(ALPHABET, repeat=length):
            tag = "".join(letters)
            if key_slot(tag.encode()) == slot:
                return tag
    raise AssertionError("unreachable")


def test_partition_tags_match_the_pinned_checksum() -> None:
    assert len(TAGS) == PARTITIONS == 1024
    assert hashlib.sha256("\n".join(TAGS).encode()).hexdigest() == TAGS_SHA256


def test_every_partition_tag_hashes_to_its_partitions_slot() -> None:
    assert [key_slot(tag.encode()) for tag in TAGS] == [partition_slot(p) for p in range(PARTITIONS)]
    assert partition_slot(PARTITIONS - 1) < REDIS_CLUSTER_HASH_SLOTS
    assert all(set(tag) <= set(ALPHABET) for tag in TAGS)


def test_a_sample_of_partition_tags_is_the_shortest_then_first_string_for_its_slot() -> None:
    # The first partitions, the last, the ones whose tag is longest, and a fixed random few.
    longest = [p for p, tag in enumerate(TAGS) if len(tag) == max(map(len, TAGS))]
    sample = {0, 1, 2, PARTITIONS - 1, *longest, *random.Random(25).sample(range(PARTITIONS), 8)}
    for p in sorted(sample):
        assert TAGS[p] == shortest_tag_for_slot(partition_slot(p)), f"partition {p}"

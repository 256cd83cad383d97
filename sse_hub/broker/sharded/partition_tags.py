"""The hash tag of each partition, computed at import.

``TAGS[p]`` is the shortest string of base36 characters (``0-9a-z``), then the first in
lexicographic order, whose Redis key slot is ``p * 16384 // 1024``. Invariants:

1. The rule fixes the table: the same tags on every run, every Python, every host, so
   keys written by one release are found by the next. ``tests/unit/test_partition_tags.py``
   pins it with a checksum.
2. No tag contains ``{`` or ``}``, so a tag is its own hash tag.

Computing it costs ~10 ms at import (about 60,000 candidates: every string of up to 3
characters and a few of 4), cheap enough to keep the rule in the source rather than its
1,024 results.
"""

from __future__ import annotations

import itertools
import string
from binascii import crc_hqx

from redis.crc import REDIS_CLUSTER_HASH_SLOTS

_PARTITIONS = 1024  # partitions.PARTITIONS, which imports this module
_SLOTS_PER_PARTITION = REDIS_CLUSTER_HASH_SLOTS // _PARTITIONS
_ALPHABET = string.digits + string.ascii_lowercase


def _find_tags() -> tuple[str, ...]:
    tags: dict[int, str] = {}
    # Candidates in order of length, then lexicographic (product keeps the alphabet's order),
    # so the first tag found for a partition is its tag; stop once every partition has one.
    for length in itertools.count(1):
        for letters in itertools.product(_ALPHABET, repeat=length):
            tag = "".join(letters)
            # crc_hqx is the CRC16 (XMODEM) of redis.crc.key_slot; without braces the whole
            # string is hashed.
            slot = crc_hqx(tag.encode(), 0) % REDIS_CLUSTER_HASH_SLOTS
            if slot % _SLOTS_PER_PARTITION == 0:
                tags.setdefault(slot // _SLOTS_PER_PARTITION, tag)
                if len(tags) == _PARTITIONS:
                    return tuple(tags[p] for p in range(_PARTITIONS))
    raise AssertionError("unreachable: itertools.count never ends")


TAGS: tuple[str, ...] = _find_tags()

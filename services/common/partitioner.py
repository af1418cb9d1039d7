"""Which partition a keyed record goes to: Kafka's own rule, murmur2 of the key, computed in C.

The rule must not change: an agency reads an alert and its updates in order only because every record of
a thread has the same key and so lands on the same partition, before and after any upgrade. aiokafka's
DefaultPartitioner computes the same murmur2 as the Java client, in pure Python: 5.6 us a record, a tenth
of the router's CPU at 21 records an alert. The `murmurhash2` extension (the `fast` extra) gives the same
numbers in 0.14 us; tests/unit/test_partitioner.py holds the two equal. Without it, aiokafka's is used.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from aiokafka.partitioner import murmur2 as _python_murmur2

SEED = 0x9747B28C  # the Java client's seed for Utils.murmur2


def _load() -> Callable[[bytes], int]:
    try:
        from murmurhash2 import murmurhash2 as compiled
    except ImportError:
        return _python_murmur2  # type: ignore[no-any-return]

    def fast(data: bytes) -> int:
        return int(compiled(data, SEED))

    return fast


murmur2 = _load()


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition of `partitions` (all of the topic's, in order) that Kafka's default rule gives `key`."""
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


class KeyPartitioner:
    """aiokafka's partitioner interface with the same rule; a record without a key goes anywhere available."""

    def __call__(self, key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        return partition_for(key, all_partitions)

"""Kafka's default partitioner (murmur2 of the key, as the Java client), with the hash cached.

aiokafka computes murmur2 in pure Python for every record; our keys repeat (customer ids,
identity keys, command ids), so each key's hash is computed once
(docs/design-notes.md#servicesbuspartitionerpy). Partitions stay exactly those of the Java
client, so anyone co-partitioning with our topics keeps agreeing with them.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner, murmur2

_RANDOM = DefaultPartitioner()


@lru_cache(maxsize=131_072)
def key_hash(key: bytes) -> int:
    """The positive murmur2 hash Kafka partitions a key by."""
    return int(murmur2(key)) & 0x7FFFFFFF


def partition(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """The partition of ``key`` (random among the available ones for no key)."""
    if key is None:
        return int(_RANDOM(key, all_partitions, available))
    return all_partitions[key_hash(key) % len(all_partitions)]


def partition_of(key: bytes | None, partitions: Collection[int] | None) -> int | None:
    """The partition of ``key`` among a topic's ``partitions`` (Kafka numbers them 0..n-1),
    chosen before the send so the client does not work out which partitions are available for
    every record; None (the client decides) without a key or before the topic's metadata."""
    if key is None or not partitions:
        return None
    return key_hash(key) % len(partitions)

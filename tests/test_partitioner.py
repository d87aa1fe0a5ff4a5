"""Our producer partitions keys exactly as Kafka's Java client does (murmur2), hash cached."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from schemas.topics import TopicSpec
from services.bus.admin import ensure_topics
from services.bus.partitioner import key_hash, partition, partition_of
from services.bus.producer import Producer
from services.bus.records import Record
from services.stack.embedded import Stack
from tests.support import consume, unique

#: murmur2 test vectors of Apache Kafka's own test suite (UtilsTest.testMurmur2), signed.
JAVA_MURMUR2 = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def test_the_hash_is_the_java_clients_murmur2() -> None:
    for key, signed in JAVA_MURMUR2.items():
        assert key_hash(key) == signed & 0x7FFFFFFF


def test_partitions_agree_with_aiokafkas_default_partitioner_for_any_key() -> None:
    rng = random.Random(5)
    stock = DefaultPartitioner()
    for _ in range(2000):
        key = rng.randbytes(rng.randrange(0, 60))
        partitions = list(range(rng.randrange(1, 33)))
        assert partition(key, partitions, partitions) == stock(key, partitions, partitions)
        assert partition(key, partitions, partitions) == partition(key, partitions, [])
        assert partition_of(key, set(partitions)) == partition(key, partitions, partitions)


def test_without_a_key_or_metadata_the_client_chooses() -> None:
    assert partition_of(None, {0, 1, 2}) is None
    assert partition_of(b"k", None) is None
    assert partition_of(b"k", set()) is None


def test_records_without_a_key_go_to_an_available_partition() -> None:
    chosen = {partition(None, [0, 1, 2, 3], [1, 3]) for _ in range(200)}
    assert chosen == {1, 3}


async def test_the_broker_stores_each_keyed_record_on_its_java_partition(stack: Stack) -> None:
    topic = unique("omnihub.test.partitions")
    await ensure_topics(stack.bootstrap, (TopicSpec(topic, 8, "k", None, "test", "test"),))
    keys = [f"customer-{n}".encode() for n in range(40)]
    producer = Producer(stack.bootstrap, client_id="test-partitioner")
    await producer.start()
    try:
        await producer.send_all(Record(topic, k, b"{}", []) for k in keys)
    finally:
        await producer.stop()
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= len(keys))
    assert {r.key: r.partition for r in records} == {k: key_hash(k) % 8 for k in keys}
    assert len({r.partition for r in records}) > 1

"""The producer lingers once for all partitions: concurrent callers' records leave together,
each caller returns only after its own records are acked, and stopping sends what waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from channels.base import PublishError
from schemas.topics import TopicSpec
from services.bus.admin import ensure_topics
from services.bus.partitioner import key_hash
from services.bus.producer import Producer
from services.bus.records import Record
from services.stack.embedded import Stack
from tests.support import consume, unique

#: A key whose partition (of 8) is not that of b"first".
OTHER_PARTITION = next(
    k for n in range(100) if key_hash(k := f"second-{n}".encode()) % 8 != key_hash(b"first") % 8
)


async def _topic(stack: Stack, prefix: str) -> str:
    topic = unique(prefix)
    await ensure_topics(stack.bootstrap, (TopicSpec(topic, 8, "k", None, "test", "test"),))
    return topic


async def test_records_of_callers_within_the_linger_leave_together(stack: Stack) -> None:
    topic = await _topic(stack, "omnihub.test.linger")
    producer = Producer(stack.bootstrap, linger_ms=400, client_id="test-linger")
    await producer.start()
    try:
        first = asyncio.create_task(producer.send_all([Record(topic, b"first", b"1", [])]))
        await asyncio.sleep(0.2)  # a second caller, on another partition, well after the first
        second = asyncio.create_task(producer.send_all([Record(topic, OTHER_PARTITION, b"2", [])]))
        await asyncio.gather(first, second)
    finally:
        await producer.stop()
    records = {r.key: r for r in await consume(stack.bootstrap, topic, lambda r: len(r) >= 2)}
    assert records[b"first"].partition != records[OTHER_PARTITION].partition
    # handed to the client in one go at the end of the linger: stamped together, not 200 ms
    # apart as they would be if each had left when it was sent
    assert abs(records[OTHER_PARTITION].timestamp - records[b"first"].timestamp) < 100


async def test_enough_queued_records_leave_without_waiting_out_the_linger(stack: Stack) -> None:
    """With ``batch_records``, records below it wait for the linger, and the caller whose
    records bring the queue to it sends them all at once: both callers are answered long before
    a linger of a minute, in one produce request (stamped together)."""
    topic = await _topic(stack, "omnihub.test.batchrecords")
    producer = Producer(stack.bootstrap, linger_ms=60_000, batch_records=3, client_id="test-br")
    await producer.start()
    try:
        first = asyncio.create_task(
            producer.send_all([Record(topic, b"first", f"1-{n}".encode(), []) for n in range(2)])
        )
        await asyncio.sleep(0.3)
        assert not first.done()  # two of three: lingering
        second = producer.send_all([Record(topic, OTHER_PARTITION, b"2", [])])
        await asyncio.wait_for(asyncio.gather(first, second), 10)
    finally:
        await producer.stop()
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 3)
    assert sorted(r.value for r in records) == [b"1-0", b"1-1", b"2"]
    stamps = [r.timestamp for r in records]
    assert max(stamps) - min(stamps) < 100


async def test_every_caller_gets_its_own_records_acked_in_order(stack: Stack) -> None:
    topic = await _topic(stack, "omnihub.test.callers")
    producer = Producer(stack.bootstrap, client_id="test-callers")
    await producer.start()
    try:
        await asyncio.gather(
            *(
                producer.send_all(
                    [Record(topic, b"same-key", f"{c}-{n}".encode(), []) for n in range(5)]
                )
                for c in range(20)
            )
        )
    finally:
        await producer.stop()
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 100)
    values = [r.value.decode() for r in records]
    assert len(values) == 100
    for c in range(20):  # one key, one partition: each caller's records in its own order
        assert [v for v in values if v.startswith(f"{c}-")] == [f"{c}-{n}" for n in range(5)]


async def test_stopping_sends_what_is_still_lingering(stack: Stack) -> None:
    topic = await _topic(stack, "omnihub.test.stop")
    producer = Producer(stack.bootstrap, linger_ms=5000, client_id="test-stop")
    await producer.start()
    pending = asyncio.create_task(producer.send_all([Record(topic, b"k", b"late", [])]))
    await asyncio.sleep(0.1)
    await producer.stop()
    await asyncio.wait_for(pending, 5)
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 1)
    assert [r.value for r in records] == [b"late"]


async def test_a_stopped_producer_refuses_at_once(stack: Stack) -> None:
    producer = Producer(stack.bootstrap, linger_ms=5000, client_id="test-stopped")
    with pytest.raises(PublishError, match="not started"):
        await asyncio.wait_for(producer.send_all([Record("omnihub.test.none", b"k", b"v", [])]), 1)


async def test_a_whole_batch_keeps_each_partitions_order_and_is_stamped(stack: Stack) -> None:
    """Without lingering, a caller's records go in record batches built by the producer: one
    key's records keep their order even when they fill several of them, every key lands on its
    own partition, and each record is stamped when it was sent (latencies and lag read it)."""
    topic = await _topic(stack, "omnihub.test.whole")
    producer = Producer(stack.bootstrap, linger_ms=0, client_id="test-whole")
    await producer.start()
    before = time.time() * 1000
    try:  # 300 records of 2 kB under one key: ~600 kB, several record batches of 256 kB
        same = [
            Record(topic, b"same-key", f"{n:04d}".encode() + b"x" * 2000, []) for n in range(300)
        ]
        spread = [Record(topic, f"k{n}".encode(), f"spread-{n}".encode(), []) for n in range(50)]
        await producer.send_all([*same, *spread])
    finally:
        await producer.stop()
    after = time.time() * 1000
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 350)
    assert len(records) == 350
    ordered = [r.value[:4] for r in records if r.key == b"same-key"]
    assert ordered == [f"{n:04d}".encode() for n in range(300)]
    for r in records:
        assert r.partition == key_hash(r.key) % 8
        assert before - 5 <= r.timestamp <= after + 5


async def test_records_carry_the_time_they_were_sent(stack: Stack) -> None:
    """Each record is stamped when it is handed to the client (the benchmark's latencies and
    any consumer's lag read it)."""
    topic = await _topic(stack, "omnihub.test.stamp")
    producer = Producer(stack.bootstrap, client_id="test-stamp")
    await producer.start()
    before = time.time() * 1000
    try:
        await producer.send_all([Record(topic, f"k{n}".encode(), b"v", []) for n in range(50)])
    finally:
        await producer.stop()
    after = time.time() * 1000
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 50)
    assert all(before - 5 <= r.timestamp <= after + 5 for r in records)


async def test_a_caller_whose_topic_cannot_be_had_fails_alone(stack: Stack) -> None:
    """Callers lingering together share record batches, but a topic whose metadata cannot be
    had (here an invalid name) fails only the callers with records for it, and does not hold
    the others up; their records are acked, all of them."""
    topic = await _topic(stack, "omnihub.test.alone")
    producer = Producer(stack.bootstrap, linger_ms=200, timeout=3, client_id="test-alone")
    await producer.start()
    try:
        good = [Record(topic, f"k{n}".encode(), f"good-{n}".encode(), []) for n in range(20)]
        bad = [Record("no such topic / " + unique("x"), b"k", b"bad", [])]
        results = await asyncio.gather(
            producer.send_all(good), producer.send_all(bad), return_exceptions=True
        )
    finally:
        await producer.stop()
    assert results[0] is None
    assert isinstance(results[1], PublishError)
    records = await consume(stack.bootstrap, topic, lambda r: len(r) >= 20)
    assert sorted(r.value for r in records) == sorted(r.value for r in good)

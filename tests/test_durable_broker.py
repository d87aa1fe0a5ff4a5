"""The durable embedded broker: Tansu on SeaweedFS keeps every acknowledged record and every
committed offset through a kill -9, a supervisor restart and a stop and start on the same data
directory; memory storage stays a choice. Records are counted by consuming them (Tansu's
ListOffsets end is the start of the last batch)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services import supervisor
from services.config import Settings
from services.stack.broker import EmbeddedBroker
from services.stack.embedded import Stack, embedded_broker
from services.stack.s3 import BUCKET, EmbeddedS3
from tests.support import read_all, unique


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One SeaweedFS for the module's brokers (each test uses its own topics)."""
    root = tmp_path_factory.mktemp("durable")
    store = EmbeddedS3(root / "broker", root / "logs")
    store.start()
    yield store
    store.stop()


@pytest.fixture
async def broker(store: EmbeddedS3, tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    """A Tansu broker on the module's store."""
    broker = EmbeddedBroker(tmp_path, store=store)
    await asyncio.to_thread(broker.start)
    yield broker
    broker.stop()


async def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, count: int, producers: int = 8) -> set[bytes]:
    """``count`` distinct records from ``producers`` producers at once (racing on the same
    partitions, as the API, the processors and the dispatcher do); returns those acked."""

    async def one(n: int) -> set[bytes]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=2)
        await producer.start()
        try:
            values = [f"{n}-{i}".encode() for i in range(n, count, producers)]
            sent = [await producer.send(topic, value, key=value) for value in values]
            await asyncio.gather(*sent)
            return set(values)
        finally:
            await producer.stop()

    acked: set[bytes] = set()
    for values in await asyncio.gather(*(one(n) for n in range(producers))):
        acked |= values
    return acked


def group_consumer(bootstrap: str, topic: str, group: str) -> AIOKafkaConsumer:
    """A consumer of ``topic`` in ``group`` that commits by hand (short session: Tansu's join
    answers after about half the session timeout)."""
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,
        heartbeat_interval_ms=500,
    )


async def consume_and_commit(bootstrap: str, topic: str, group: str, count: int) -> dict:
    """Consume ``count`` records in ``group`` and commit; returns the committed offsets."""
    consumer = group_consumer(bootstrap, topic, group)
    await consumer.start()
    try:
        got = 0
        while got < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=count - got)
            got += sum(len(records) for records in batch.values())
        await consumer.commit()
        return {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()


async def committed(bootstrap: str, topic: str, group: str, partitions: int = 3) -> dict:
    """The group's committed offsets, as the broker has them now."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        offsets = {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
        return {p: offset for p, offset in offsets.items() if offset is not None}
    finally:
        await consumer.stop()


def kill_9(server: EmbeddedBroker | EmbeddedS3) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(10)


def test_the_store_refuses_stale_conditional_writes(store: EmbeddedS3) -> None:
    """What Tansu's offsets rest on: a create over an existing object and an update from a
    stale version get 412, and of racing updates from one version exactly one wins."""
    client, key = store.client(), f"/{BUCKET}/probe/{unique()}"
    assert client.request("PUT", key, b"one")[0] == 200
    assert client.request("PUT", key, b"two", {"If-None-Match": "*"})[0] == 412
    etag = client.request("HEAD", key)[1]["etag"]
    assert client.request("PUT", key, b"three", {"If-Match": '"0123456789abcdef"'})[0] == 412
    assert client.request("GET", key)[2] == b"one"
    with ThreadPoolExecutor(16) as pool:
        statuses = list(
            pool.map(
                # 30 s: sixteen conditional writes queue up in the store on a loaded machine
                lambda n: client.request(
                    "PUT", key, f"racer {n}".encode(), {"If-Match": etag}, timeout=30
                )[0],
                range(16),
            )
        )
    assert sorted(statuses) == [200] + [412] * 15


async def test_acknowledged_records_and_committed_offsets_survive_a_kill_9(
    broker: EmbeddedBroker,
) -> None:
    topic, group = unique("durable"), unique("group")
    await create_topic(broker.bootstrap, topic)
    acked = await produce(broker.bootstrap, topic, 2000)
    assert len(acked) == 2000
    offsets = await consume_and_commit(broker.bootstrap, topic, group, 500)
    assert sum(offsets.values()) == 500

    kill_9(broker)
    await asyncio.to_thread(broker.restart)

    assert {r.value for r in await read_all(broker.bootstrap, topic)} == acked
    assert await committed(broker.bootstrap, topic, group) == offsets
    consumed = await first_values(broker.bootstrap, topic, offsets)
    assert len(consumed) == 500
    assert await read_group(broker.bootstrap, topic, group) == acked - consumed


async def read_group(bootstrap: str, topic: str, group: str) -> set[bytes]:
    """Everything the group has not committed yet, read until two quiet polls."""
    consumer = group_consumer(bootstrap, topic, group)
    await consumer.start()
    values: set[bytes] = set()
    try:
        quiet = 0
        while quiet < 2 or not consumer.assignment():
            batch = await consumer.getmany(timeout_ms=500)
            got = [r.value for records in batch.values() for r in records]
            values |= set(got)
            quiet = 0 if got else quiet + 1
    finally:
        await consumer.stop()
    return values


async def first_values(bootstrap: str, topic: str, offsets: dict) -> set[bytes]:
    """The records before the committed offsets (those the group had consumed)."""
    records = await read_all(bootstrap, topic)
    return {r.value for r in records if r.offset < offsets.get(r.partition, 0)}


async def test_the_supervisor_restarts_a_killed_broker_and_its_store(
    store: EmbeddedS3, broker: EmbeddedBroker
) -> None:
    """Through watch_once and Stack.restart, as `omnihub up` runs them: both come back on
    their ports, and what was acknowledged before is there."""
    topic = unique("watched")
    await create_topic(broker.bootstrap, topic)
    acked = await produce(broker.bootstrap, topic, 300, producers=3)
    stack = Stack(bootstrap=broker.bootstrap, database_url="", started=[store, broker])
    servers = [supervisor.Component(s.label, proc=s.proc) for s in (store, broker)]
    old = {s.label: s.proc.pid for s in (store, broker) if s.proc}

    kill_9(broker)
    kill_9(store)
    await asyncio.to_thread(supervisor.watch_once, servers, stack.restart, 100.0)
    assert [s.restart_at for s in servers] == [102.0, 102.0]  # the components' back-off
    await asyncio.to_thread(supervisor.watch_once, servers, stack.restart, 102.0)

    assert store.alive() and broker.alive()
    assert {s.name: s.proc.pid for s in servers if s.proc} != old
    assert [s.proc for s in servers] == [store.proc, broker.proc]
    assert {r.value for r in await read_all(broker.bootstrap, topic)} == acked
    assert len(await produce(broker.bootstrap, topic, 100, producers=2)) == 100


async def test_a_stop_and_start_on_the_same_data_directory_finds_everything_again(
    tmp_path: Path,
) -> None:
    """What Ctrl-C and `omnihub up` again do: the same Kafka address, the same store, the
    topic's records and the group's offsets."""
    topic, group = unique("kept"), unique("group")
    broker, store = embedded_broker(tmp_path, "durable")
    assert store is not None
    try:
        await asyncio.to_thread(store.start)
        await asyncio.to_thread(broker.start)
        await create_topic(broker.bootstrap, topic)
        acked = await produce(broker.bootstrap, topic, 500, producers=2)
        offsets = await consume_and_commit(broker.bootstrap, topic, group, 100)
    finally:
        broker.stop()
        store.stop()

    again, store_again = embedded_broker(tmp_path, "durable")
    assert store_again is not None
    assert (again.bootstrap, store_again.ports, store_again.credentials) == (
        broker.bootstrap,
        store.ports,
        store.credentials,
    )
    try:
        await asyncio.to_thread(store_again.start)
        await asyncio.to_thread(again.start)
        assert {r.value for r in await read_all(again.bootstrap, topic)} == acked
        assert await committed(again.bootstrap, topic, group) == offsets
    finally:
        again.stop()
        store_again.stop()


async def test_memory_storage_is_still_a_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMNIHUB_BROKER_STORAGE=memory: no store, and a restart comes back empty."""
    monkeypatch.delenv("OMNIHUB_BROKER_STORAGE", raising=False)
    assert Settings().broker_storage == "durable"  # the default
    monkeypatch.setenv("OMNIHUB_BROKER_STORAGE", "memory")
    broker, store = embedded_broker(tmp_path, Settings().broker_storage)
    assert store is None and broker.storage == "memory"
    topic = unique("memory")
    await asyncio.to_thread(broker.start)
    try:
        await create_topic(broker.bootstrap, topic)
        assert len(await produce(broker.bootstrap, topic, 100, producers=2)) == 100
        await asyncio.to_thread(broker.restart)
        admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
        await admin.start()
        try:
            assert topic not in await admin.list_topics()
        finally:
            await admin.close()
    finally:
        broker.stop()
    assert not (tmp_path / "broker" / "s3").exists()

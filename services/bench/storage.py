"""The embedded broker's two storages side by side (`broker_storage` in the report).

A memory Tansu and a durable one (Tansu on its SeaweedFS) are started together, beside the
hub's own stack, and given the same plain aiokafka load in turn: records produced as fast as
they are acknowledged (batched: 20 ms linger, like the web processes), then one record a
request waiting for each ack (no linger: the broker's own cost of an acknowledged write), then
every record read back by a plain consumer.
What durability costs the broker's clients, measured on this machine in the same run.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.bench import measure
from services.stack.embedded import embedded_broker
from services.stack.process import ChildProcess
from services.stack.s3 import weed_binary

TOPIC = "omnihub.bench.storage"
#: Batched records, their size, and the records sent one request each.
RECORDS = 20_000
RECORD_BYTES = 300
ONE_BY_ONE = 500


async def compare(records: int = RECORDS, one_by_one: int = ONE_BY_ONE) -> dict[str, Any]:
    """Both storages' figures and the durable one's share of the memory one's rates (or why
    the phase was skipped: no SeaweedFS on this system)."""
    try:
        weed_binary()
    except RuntimeError as missing:
        return {"skipped": str(missing)}
    data_dir = Path(tempfile.mkdtemp(prefix="omnihub-bench-storage-"))
    memory, _ = embedded_broker(data_dir / "memory", "memory")
    durable, store = embedded_broker(data_dir / "durable", "durable")
    assert store is not None
    started: list[ChildProcess] = []
    try:
        for server in (memory, store, durable):
            await asyncio.to_thread(server.start)
            started.append(server)
        report: dict[str, Any] = {
            "memory": await _measure(memory.bootstrap, [memory], records, one_by_one),
            "durable": await _measure(durable.bootstrap, [durable, store], records, one_by_one),
        }
    finally:
        for child in reversed(started):
            await asyncio.to_thread(child.stop)
        shutil.rmtree(data_dir, ignore_errors=True)
    mem, dur = report["memory"], report["durable"]
    report["ratio"] = {
        key: round(dur[key] / mem[key], 3)
        for key in (
            "produce_records_per_second",
            "acks_one_by_one_per_second",
            "consume_records_per_second",
        )
    }
    return report


async def _measure(
    bootstrap: str, servers: list[ChildProcess], records: int, one_by_one: int
) -> dict[str, Any]:
    """One broker's figures: batched produce, one-by-one acks, consume count; the CPU its
    processes (the broker, and its store) spent a batched record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, 8, 1)])
    finally:
        await admin.close()
    groups = {s.label: [s.proc.pid] for s in servers if s.proc is not None}
    value = b"x" * RECORD_BYTES
    batched = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    single = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await batched.start()
    await single.start()
    try:
        cpu_before = measure.cpu_seconds(groups)
        began = time.perf_counter()
        sent = [await batched.send(TOPIC, value, key=b"%d" % n) for n in range(records)]
        await asyncio.gather(*sent)
        produce_seconds = time.perf_counter() - began
        cpu = measure.cpu_seconds(groups)
        latencies = []
        for n in range(one_by_one):
            began = time.perf_counter()
            await single.send_and_wait(TOPIC, value, key=b"one-%d" % n)
            latencies.append(time.perf_counter() - began)
    finally:
        await batched.stop()
        await single.stop()
    consumed, consume_seconds = await _consume(bootstrap, records + one_by_one)
    return {
        "records": records,
        "record_bytes": RECORD_BYTES,
        "produce_records_per_second": round(records / produce_seconds),
        "broker_cpu_us_per_record": {
            name: round((cpu[name] - cpu_before.get(name, 0.0)) / records * 1e6) for name in cpu
        },
        "acks_one_by_one_per_second": round(one_by_one / sum(latencies)),
        "ack_one_by_one": measure.spread(sorted(latencies)),
        "consumed": consumed,
        "consume_records_per_second": round(consumed / consume_seconds),
    }


async def _consume(bootstrap: str, expected: int, timeout: float = 120) -> tuple[int, float]:
    """Read the topic from the start until ``expected`` records (or two quiet seconds)."""
    consumer = AIOKafkaConsumer(
        TOPIC,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=5000,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    count, quiet, began = 0, 0, time.perf_counter()
    deadline = began + timeout
    try:
        while count < expected and quiet < 4 and time.perf_counter() < deadline:
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            got = sum(len(part) for part in batch.values())
            count += got
            quiet = 0 if got else quiet + 1
    finally:
        await consumer.stop()
    return count, time.perf_counter() - began

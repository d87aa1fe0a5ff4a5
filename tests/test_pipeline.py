"""Delivery guarantees of the processors: dead letters, duplicates, crashes, migrations."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas import Department, Interaction, Purpose, UnifiedEvent
from schemas.cloudevents import ERROR_HEADER, ORIGIN_TOPIC_HEADER, STAGE_HEADER, header_map
from schemas.topics import DEADLETTER, INTERACTIONS, ROUTED, UNIFIED
from services.bus.admin import ensure_topics
from services.bus.producer import Producer
from services.bus.records import Record
from services.config import Settings
from services.db.migrate import available, migrate
from services.processors.app import APP_ID
from services.processors.route import RouteStep
from services.stack.broker import EmbeddedBroker
from services.stack.embedded import prepare
from services.stack.postgres import EmbeddedPostgres
from tests.support import (
    consume,
    eventually,
    opened_values,
    read_all,
    sealing_publisher,
    start_component,
    stop_process,
    unique,
)


def interaction(**overrides: Any) -> Interaction:
    """A fresh interaction for a fresh customer."""
    fields: dict[str, Any] = {
        "channel": "api",
        "direction": "inbound",
        "kind": "message",
        "identities": [{"type": "email", "value": f"{unique('p')}@example.com"}],
        "text": "Where is my refund?",
        "provider_message_id": unique("pm"),
    }
    fields.update(overrides)
    return Interaction.create(**fields)


async def rows(pool: asyncpg.Pool, events: list[Interaction]) -> int:
    """How many timeline rows the given events have."""
    return await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )


@pytest.mark.usefixtures("processors")
async def test_unparseable_records_go_to_dead_letter_and_work_goes_on(
    stack: Any, producer: Producer, pool: asyncpg.Pool
) -> None:
    marker = unique("garbage")
    good = interaction()
    bad_json = Record(INTERACTIONS.name, marker.encode(), b"{this is not json", [])
    wrong_shape = Record(
        INTERACTIONS.name,
        marker.encode(),
        json.dumps({"event_id": "nope", "text": marker}).encode(),
        [("ce_id", marker.encode())],
    )
    await producer.send_all([bad_json, wrong_shape])
    await (await sealing_publisher(producer, pool)).publish([good])

    dead = await consume(
        stack.bootstrap, DEADLETTER.name, lambda rs: sum(r.key == marker.encode() for r in rs) == 2
    )
    ours = [r for r in dead if r.key == marker.encode()]
    assert {r.value for r in ours} == {bad_json.value, wrong_shape.value}
    for record in ours:
        headers = header_map(record.headers)
        assert headers[STAGE_HEADER] == "unify"
        assert headers[ORIGIN_TOPIC_HEADER] == INTERACTIONS.name
        assert "Interaction validation failed" in headers[ERROR_HEADER]
    shaped = next(r for r in ours if r.value == wrong_shape.value)
    assert header_map(shaped.headers)["ce_id"] == marker
    assert header_map(shaped.headers)["ce_type"] == DEADLETTER.ce_type
    assert "event_id" in header_map(shaped.headers)[ERROR_HEADER]
    assert await eventually(lambda: rows(pool, [good])) == 1


@pytest.mark.usefixtures("processors")
async def test_duplicate_records_on_the_bus_give_one_row(
    producer: Producer, pool: asyncpg.Pool
) -> None:
    events = [interaction() for _ in range(20)]
    publisher = await sealing_publisher(producer, pool)
    await publisher.publish(events)
    await publisher.publish(events)  # a provider retry, or a replay
    await publisher.publish(events[:5])
    await eventually(lambda: _equals(rows(pool, events), 20))
    marker = interaction()
    await publisher.publish([marker])
    await eventually(lambda: rows(pool, [marker]))
    assert await rows(pool, events) == 20
    counts = await pool.fetch(
        "SELECT event_id, count(*) AS n FROM timeline "
        "WHERE event_id = ANY($1::uuid[]) GROUP BY event_id",
        [e.event_id for e in events],
    )
    assert {r["n"] for r in counts} == {1}


async def _equals(value: Any, expected: Any) -> bool:
    return await value == expected


async def committed(bootstrap: str, topic: str, partitions: int) -> int:
    """Sum of the processors group's committed offsets on ``topic``."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=APP_ID, enable_auto_commit=False
    )
    await consumer.start()
    try:
        total = 0
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def test_killed_between_db_commit_and_offset_commit_leaves_one_row(
    stack: Any, pool: asyncpg.Pool, component_env: dict[str, str], tmp_path: Path
) -> None:
    """SIGKILL the worker after its rows are committed but before its offsets are, restart it."""
    broker = EmbeddedBroker(tmp_path)  # its own broker: its own consumer group state
    broker.start()
    try:
        await ensure_topics(broker.bootstrap)
        env = dict(
            component_env, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, OMNIHUB_COMMIT_INTERVAL="600"
        )  # offsets would be committed much later
        producer = Producer(broker.bootstrap)
        await producer.start()
        events = [interaction() for _ in range(50)]
        await (await sealing_publisher(producer, pool)).publish(events)

        worker = start_component("processors", env, tmp_path / "w1.log")
        try:
            await eventually(lambda: _equals(rows(pool, events), 50), timeout=60)
        finally:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
        # The rows are in PostgreSQL, the offsets are not in Kafka: the crash window.
        assert await committed(broker.bootstrap, INTERACTIONS.name, INTERACTIONS.partitions) == 0
        first_projection = dict(
            await pool.fetch(
                "SELECT event_id, projected_at FROM timeline WHERE event_id = ANY($1::uuid[])",
                [e.event_id for e in events],
            )
        )

        env["OMNIHUB_COMMIT_INTERVAL"] = "0.5"
        again = start_component("processors", env, tmp_path / "w2.log")
        try:
            # Everything is consumed again and committed this time ...
            await eventually(
                lambda: _at_least(
                    committed(broker.bootstrap, INTERACTIONS.name, INTERACTIONS.partitions), 50
                ),
                timeout=60,
            )
        finally:
            stop_process(again)
        await producer.stop()
    finally:
        broker.stop()
    # ... yet each event still has exactly one row, the one written before the crash.
    counts = await pool.fetch(
        "SELECT event_id, projected_at FROM timeline WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    assert len(counts) == 50
    assert dict(counts) == first_projection


async def test_offsets_wait_for_an_unfinished_batch_while_later_ones_move_on(
    stack: Any, pool: asyncpg.Pool, component_env: dict[str, str], tmp_path: Path
) -> None:
    """A full batch goes through the first steps while an earlier one waits to be written,
    but no offset past the waiting batch is committed until it is in the timeline."""
    broker = EmbeddedBroker(tmp_path)  # its own broker: its own consumer group state
    broker.start()
    try:
        await ensure_topics(broker.bootstrap)
        env = dict(
            component_env,
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
            OMNIHUB_COMMIT_INTERVAL="0.2",
            OMNIHUB_BATCH_SIZE="10",  # later events make full batches, which go in beside
        )
        producer = Producer(broker.bootstrap)
        await producer.start()
        publisher = await sealing_publisher(producer, pool)
        first = [interaction() for _ in range(20)]
        await publisher.publish(first)
        worker = start_component("processors", env, tmp_path / "worker.log")
        offsets = lambda: committed(broker.bootstrap, INTERACTIONS.name, INTERACTIONS.partitions)  # noqa: E731
        try:
            await eventually(lambda: _equals(rows(pool, first), 20), timeout=60)
            await eventually(lambda: _at_least(offsets(), 20), timeout=30)
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute("LOCK TABLE timeline IN SHARE MODE")  # inserts wait, reads not
                stalled = [interaction() for _ in range(10)]
                await publisher.publish(stalled)
                await eventually(lambda: _timeline_insert_waiting(pool), timeout=30)
                later = [interaction() for _ in range(10)]
                await publisher.publish(later)
                # a full batch of later events is resolved meanwhile ...
                await eventually(lambda: _resolved(pool, later), timeout=30)
                await asyncio.sleep(2)  # ten commit intervals
                # ... but nothing past the waiting batch is committed, nor in the timeline
                assert await offsets() == 20
                assert await rows(pool, stalled + later) == 0
            await eventually(lambda: _equals(rows(pool, stalled + later), 20), timeout=60)
            await eventually(lambda: _at_least(offsets(), 40), timeout=30)
        finally:
            stop_process(worker)
            await producer.stop()
    finally:
        broker.stop()


async def test_a_worker_joining_while_batches_are_in_flight_loses_and_repeats_nothing(
    stack: Any, pool: asyncpg.Pool, component_env: dict[str, str], tmp_path: Path
) -> None:
    """A second worker joins while the first holds batches in its pipeline (their timeline
    insert waits on a lock): the rebalance waits for them, and every event lands once in the
    timeline and once, as primary, on its department topic."""
    broker = EmbeddedBroker(tmp_path)  # its own broker: its own topics and consumer group
    broker.start()
    workers: list[Any] = []
    try:
        await ensure_topics(broker.bootstrap)
        env = dict(component_env, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap)
        producer = Producer(broker.bootstrap)
        await producer.start()
        events = [interaction() for _ in range(1500)]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("LOCK TABLE timeline IN SHARE MODE")  # inserts wait, reads not
            await (await sealing_publisher(producer, pool)).publish(events)
            workers.append(start_component("processors", env, tmp_path / "w1.log"))
            await eventually(lambda: _timeline_insert_waiting(pool), timeout=60)
            workers.append(start_component("processors", env, tmp_path / "w2.log"))
            await asyncio.sleep(3)  # the second asks to join; the first must hand over
        await eventually(lambda: _equals(rows(pool, events), 1500), timeout=90)
        await producer.stop()
        routed = [
            json.loads(value or b"{}")
            for topic in ROUTED.values()
            for value in await opened_values(pool, await read_all(broker.bootstrap, topic.name))
        ]
        primaries = Counter(r["event_id"] for r in routed if r["routing"]["copy_of"] is None)
        assert set(primaries) == {str(e.event_id) for e in events}
        assert set(primaries.values()) == {1}
        assert all(w.poll() is None for w in workers)  # both still running
    finally:
        for worker in workers:
            stop_process(worker)
        broker.stop()


async def test_an_opt_out_counts_for_the_next_batch_decided_before_it_is_written(
    pool: asyncpg.Pool,
) -> None:
    """The pipeline decides a batch while the previous one's opt-outs are not written yet: a
    marketing message right after a customer's STOP is not routed to marketing."""
    customer = uuid.uuid4()
    promo = "Are you sponsoring the city marathon again this year? We'd love to partner up."

    def unified(text: str) -> UnifiedEvent:
        return UnifiedEvent(
            event_id=uuid.uuid4(),
            customer_id=customer,
            unified_at=datetime.now(UTC),
            interaction=interaction(channel="sms", text=text),
        )

    alone = RouteStep(Settings())
    async with pool.acquire() as conn:
        [(_, before)] = (await alone.decide(conn, [unified(promo)])).decided
        assert before.primary is not None
        assert before.primary.department is Department.MARKETING
        step = RouteStep(Settings())
        stop = await step.decide(conn, [unified("STOP")])
        assert [w.change.purpose for w in stop.writes] == [Purpose.MARKETING]
        [(_, after)] = (await step.decide(conn, [unified(promo)])).decided  # nothing written
    assert after.primary is not None
    assert after.primary.department is not Department.MARKETING


async def _timeline_insert_waiting(pool: asyncpg.Pool) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE c.relname = 'timeline' AND NOT l.granted"
        )
    )


async def _resolved(pool: asyncpg.Pool, events: list[Interaction]) -> int:
    """How many of ``events``' identities are linked to a customer."""
    return await pool.fetchval(
        "SELECT count(*) FROM identities WHERE type = 'email' AND value = ANY($1::text[])",
        [e.identities[0].value for e in events],
    )


async def _at_least(value: Any, expected: int) -> bool:
    return await value >= expected


async def test_migrations_apply_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []  # the session already applied everything
        versions = [
            r["version"]
            for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")
        ]
    assert versions == [m.version for m in available()]


async def test_migrations_apply_concurrently_exactly_once(stack: Any) -> None:
    """Two processes starting together against a fresh database apply each file once."""
    name = f"m_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(stack.database_url)
    await admin.execute(f"CREATE DATABASE {name}")
    url = stack.database_url.rsplit("/", 1)[0] + f"/{name}"
    conns = [await asyncpg.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in conns))
        applied = sorted(v for r in results for v in r)
        assert applied == [m.version for m in available()]
        count = await conns[0].fetchval("SELECT count(*) FROM schema_migrations")
        assert count == len(available())
    finally:
        for c in conns:
            await c.close()
        await admin.execute(f"DROP DATABASE {name}")
        await admin.close()


@pytest.mark.usefixtures("processors")
async def test_an_event_that_cannot_be_stored_is_dead_lettered_alone(
    stack: Any, producer: Producer, pool: asyncpg.Pool
) -> None:
    """PostgreSQL cannot store NUL characters, so the contract refuses them; a record holding
    one that reached the topic anyway (an older or foreign producer) is isolated, the batch
    goes on."""
    good = [interaction() for _ in range(5)]
    poison = interaction().model_copy(update={"text": "before\x00after"})  # not validated
    await (await sealing_publisher(producer, pool)).publish([*good[:2], poison, *good[2:]])
    assert await eventually(lambda: _equals(rows(pool, good), 5))

    def poisoned(records: list[Any]) -> bool:
        return any(
            header_map(r.headers).get("ce_id") == str(poison.event_id)
            and header_map(r.headers).get(STAGE_HEADER) == "unify"
            for r in records
        )

    dead = await consume(stack.bootstrap, DEADLETTER.name, poisoned)
    [record] = [r for r in dead if header_map(r.headers).get("ce_id") == str(poison.event_id)]
    headers = header_map(record.headers)
    assert headers[ORIGIN_TOPIC_HEADER] == INTERACTIONS.name
    assert "text" in headers[ERROR_HEADER] and "pattern" in headers[ERROR_HEADER]
    assert await rows(pool, [poison]) == 0


async def test_database_outage_delays_but_loses_nothing(
    component_env: dict[str, str], tmp_path: Path
) -> None:
    """PostgreSQL goes away mid-stream: the worker retries, and every event lands once."""
    broker = EmbeddedBroker(tmp_path)
    broker.start()
    database = EmbeddedPostgres(tmp_path / "pgdata", durable=False)
    database.start()
    worker = None
    try:
        await prepare(broker.bootstrap, database.url)
        env = dict(
            component_env, KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, DATABASE_URL=database.url
        )
        producer = Producer(broker.bootstrap)
        await producer.start()
        publisher = await sealing_publisher(producer, database.url)
        before = [interaction() for _ in range(10)]
        during = [interaction() for _ in range(10)]
        worker = start_component("processors", env, tmp_path / "worker.log")
        own = await asyncpg.connect(database.url)
        await publisher.publish(before)
        await eventually(lambda: _equals(_count(own, before), 10), timeout=60)
        await own.close()

        database.stop()
        await publisher.publish(during)
        await asyncio.sleep(3)  # the worker meets the outage and retries
        database.start()

        again = await asyncpg.connect(database.url)
        try:
            await eventually(lambda: _equals(_count(again, before + during), 20), timeout=60)
            duplicates = await again.fetchval(
                "SELECT count(*) - count(DISTINCT event_id) FROM timeline"
            )
            assert duplicates == 0
        finally:
            await again.close()
        await producer.stop()
        log = (tmp_path / "worker.log").read_text()
        assert "transient failure, retrying" in log
    finally:
        if worker is not None:
            stop_process(worker)
        database.stop()
        broker.stop()


async def _count(conn: asyncpg.Connection, events: list[Interaction]) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )


@pytest.mark.usefixtures("processors")
async def test_a_replayed_event_is_not_routed_twice(
    stack: Any, producer: Producer, pool: asyncpg.Pool
) -> None:
    """Redelivery after a rebalance or restart must not duplicate department records."""
    from schemas import UnifiedEvent
    from schemas.topics import ROUTED
    from services.bus.records import to_record

    original = interaction(text="My invoice is wrong, I was charged twice")
    await (await sealing_publisher(producer, pool)).publish([original])
    customer = await eventually(
        lambda: pool.fetchval(
            "SELECT customer_id FROM routing_decisions WHERE event_id = $1", original.event_id
        )
    )
    await eventually(
        lambda: pool.fetchval(
            "SELECT published_at FROM routing_decisions WHERE event_id = $1", original.event_id
        )
    )
    replay = UnifiedEvent(
        event_id=original.event_id,
        customer_id=customer,
        unified_at=original.received_at,
        interaction=original,
    )
    # replayed on both ways in: as the interaction (unify) and as the unified event (project)
    await (await sealing_publisher(producer, pool)).publish([original, original])
    await producer.send_all([to_record(UNIFIED, replay, str(replay.event_id), "test")] * 2)
    # markers with the same partition keys (identity; customer), so handled after the replays
    marker = interaction(text="My invoice is wrong again", identities=original.identities)
    await (await sealing_publisher(producer, pool)).publish([marker])
    late = interaction(text="Still wrong, my invoice", identities=original.identities)
    await producer.send_all(
        [
            to_record(
                UNIFIED,
                UnifiedEvent(
                    event_id=late.event_id,
                    customer_id=customer,
                    unified_at=late.received_at,
                    interaction=late,
                ),
                str(late.event_id),
                "test",
            )
        ]
    )
    for done in (marker, late):
        await eventually(
            lambda done=done: pool.fetchval(
                "SELECT published_at FROM routing_decisions WHERE event_id = $1", done.event_id
            )
        )
    seen = [r for spec in ROUTED.values() for r in await read_all(stack.bootstrap, spec.name)]
    primaries = [
        r
        for r, value in zip(seen, await opened_values(pool, seen), strict=True)
        if header_map(r.headers)["ce_id"] == str(original.event_id)
        and b'"copy_of":null' in (value or b"")
    ]
    assert len(primaries) == 1
    assert any(header_map(r.headers)["ce_id"] == str(marker.event_id) for r in seen)
    assert any(header_map(r.headers)["ce_id"] == str(late.event_id) for r in seen)

"""The machine's own ceiling, measured in the same run: plain aiokafka and plain asyncpg."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer

from schemas import Interaction, UnifiedEvent
from schemas.cloudevents import ce_headers
from schemas.events import utcnow
from schemas.topics import INTERACTIONS, TopicSpec
from services.bus.admin import ensure_topics
from services.bus.producer import Producer
from services.bus.records import Record
from services.keys.reader import SealedReader
from services.processors.timeline import write_events
from services.routing.engine import Message, Router

#: The plain loop's events/s at this machine's usual speed: absolute targets are meant there.
USUAL_PLAIN_LOOP = 12_000


def scaled(rate: float, plain_loop: float | None) -> float | None:
    """``rate`` as it would be at the machine's usual speed (by the plain loop's ratio)."""
    return rate * USUAL_PLAIN_LOOP / plain_loop if plain_loop else None


SCRATCH = "omnihub.bench.yardstick"


async def plain_loop(bootstrap: str, database_url: str, count: int, router: Router) -> float:
    """consume -> open -> validate -> route -> produce with bare aiokafka; returns events/s.
    Opening the sealed raw records costs it ~5 % (docs/performance.md, "Sealed raw records")."""
    topics = {
        d: f"{SCRATCH}.{d}" for d in ("sales", "marketing", "finance", "after_sales", "triage")
    }
    await ensure_topics(
        bootstrap,
        tuple(TopicSpec(name, 8, "", None, "bench", "scratch") for name in topics.values()),
    )
    consumer = AIOKafkaConsumer(
        INTERACTIONS.name,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_wait_ms=50,
    )
    producer = Producer(bootstrap, client_id="bench-yardstick")
    reader = SealedReader()
    conn = await asyncpg.connect(database_url)
    await consumer.start()
    await producer.start()
    done = 0
    start = time.perf_counter()
    try:
        while done < count:
            batch = await consumer.getmany(timeout_ms=500, max_records=2000)
            out: list[Record] = []
            for records in batch.values():
                for record, value in zip(records, await reader.values(conn, records), strict=True):
                    if done + len(out) >= count:
                        break
                    interaction = Interaction.model_validate_json(value or b"")
                    decision = router.route(Message.of(interaction))
                    department = decision.primary.department.value if decision.primary else "triage"
                    out.append(
                        Record(
                            topics[department],
                            record.key,
                            record.value,
                            ce_headers(
                                event_id=str(interaction.event_id), ce_type="bench", source="bench"
                            ),
                        )
                    )
            await producer.send_all(out)
            done += len(out)
        return count / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.close()


async def plain_writes(database_url: str, events: Sequence[Interaction]) -> float:
    """The timeline's batched insert into a scratch copy of the table; returns rows/s."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;"
            " CREATE TABLE bench.timeline (LIKE public.timeline INCLUDING ALL);"
            " CREATE TABLE bench.customers (LIKE public.customers INCLUDING ALL);"
        )
        await conn.execute("SET search_path = bench, public")
        customer = __import__("uuid").uuid4()
        unified = [
            UnifiedEvent(
                event_id=e.event_id, customer_id=customer, unified_at=utcnow(), interaction=e
            )
            for e in events
        ]
        start = time.perf_counter()
        for offset in range(0, len(unified), 500):
            await write_events(conn, unified[offset : offset + 500])
        rate = len(unified) / (time.perf_counter() - start)
        await conn.execute("DROP SCHEMA bench CASCADE")
        return rate
    finally:
        await conn.close()

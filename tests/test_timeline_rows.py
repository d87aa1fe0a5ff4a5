"""The timeline's batched insert: each column of a row is what the interaction says."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import asyncpg

from schemas import Interaction, UnifiedEvent
from schemas.events import utcnow
from services.processors.timeline import insert_events, write_events
from tests.support import phone, unique

AWKWARD = 'say "hi" \\ back\\slash, {braces} Привет 🙂\nline\ttab \u2028 <b>&amp;</b>\'; --'


def interaction(**fields: Any) -> Interaction:
    """An inbound SMS with these fields."""
    return Interaction.create(
        channel="sms",
        direction="inbound",
        kind="message",
        identities=[{"type": "phone", "value": phone()}],
        provider_message_id=fields.pop("provider_message_id", unique("SM")),
        **fields,
    )


async def customer(pool: asyncpg.Pool) -> uuid.UUID:
    """A new live customer."""
    found: uuid.UUID = await pool.fetchval(
        "INSERT INTO customers (id) VALUES ($1) RETURNING id", uuid.uuid4()
    )
    return found


def unified(event: Interaction, customer_id: uuid.UUID) -> UnifiedEvent:
    return UnifiedEvent(
        event_id=event.event_id, customer_id=customer_id, unified_at=utcnow(), interaction=event
    )


async def test_columns_come_from_the_interaction(pool: asyncpg.Pool) -> None:
    """Text, times, thread, language and command id land in their columns unchanged, and the
    ``interaction`` column holds the whole event."""
    command = uuid.uuid4()
    occurred = datetime(
        2026, 3, 1, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30))
    )
    full = interaction(
        subject=AWKWARD,
        text=AWKWARD * 3,
        language="uk",
        thread={"id": f"thread {AWKWARD}"},
        provider_message_id=f"SM {AWKWARD}",
        occurred_at=occurred,
        attributes={"command_id": str(command), "note": AWKWARD},
    )
    bare = interaction()
    owner = await customer(pool)
    async with pool.acquire() as conn:
        written = await write_events(conn, [unified(full, owner), unified(bare, owner)])
    assert written == 2
    rows = {
        r["event_id"]: r
        for r in await pool.fetch(
            "SELECT *, interaction::text AS doc FROM timeline WHERE customer_id = $1", owner
        )
    }
    row = rows[full.event_id]
    assert (row["subject"], row["body"], row["language"]) == (AWKWARD, AWKWARD * 3, "uk")
    assert row["thread_id"] == f"thread {AWKWARD}"
    assert row["provider_message_id"] == f"SM {AWKWARD}"
    assert (row["channel"], row["direction"], row["kind"]) == ("sms", "inbound", "message")
    assert row["occurred_at"] == occurred
    assert row["received_at"] == full.received_at
    assert row["command_id"] == command
    assert Interaction.model_validate(json.loads(row["doc"])) == full
    plain = rows[bare.event_id]
    assert (plain["subject"], plain["body"], plain["thread_id"], plain["command_id"]) == (
        None,
        None,
        None,
        None,
    )
    assert Interaction.model_validate(json.loads(plain["doc"])) == bare


async def test_only_a_command_id_of_ours_is_read(pool: asyncpg.Pool) -> None:
    """A ``command_id`` attribute that is not a UUID in text (a client's number, a stray
    string) is not ours: no command id, and the events are still written."""
    owner = await customer(pool)
    events = [interaction(attributes={"command_id": v}) for v in (7, True, "", "order-12")]
    async with pool.acquire() as conn:
        assert await write_events(conn, [unified(e, owner) for e in events]) == 4
    found = await pool.fetch(
        "SELECT command_id FROM timeline WHERE event_id = ANY($1::uuid[])",
        [e.event_id for e in events],
    )
    assert [r["command_id"] for r in found] == [None] * 4


async def test_a_replayed_event_is_written_once_and_kept(pool: asyncpg.Pool) -> None:
    """The same event id again (a replay) writes nothing and leaves the first row as it was."""
    owner = await customer(pool)
    first = interaction(text="first")
    again = first.model_copy(update={"text": "changed"})
    async with pool.acquire() as conn:
        assert await write_events(conn, [unified(first, owner)]) == 1
        assert await write_events(conn, [unified(again, owner), unified(again, owner)]) == 0
    body = await pool.fetchval("SELECT body FROM timeline WHERE event_id = $1", first.event_id)
    assert body == "first"


async def test_every_row_a_batch_writes_is_announced_once_at_commit(pool: asyncpg.Pool) -> None:
    """The live timeline hears '<customer id>/<event id>' once for each row a batched insert
    writes, when it commits; a row already there is not announced again."""
    owners = [await customer(pool), await customer(pool)]
    events = [unified(interaction(text=f"n{n}"), owners[n % 2]) for n in range(5)]
    heard: list[str] = []

    def hear(conn: Any, pid: int, channel: str, payload: str) -> None:
        heard.append(payload)

    listener = await pool.acquire()
    try:
        await listener.add_listener("omnihub_timeline", hear)
        async with pool.acquire() as conn:
            async with conn.transaction():
                assert await insert_events(conn, events[:3]) == 3
                await listener.execute("SELECT 1")  # a round trip: nothing before commit
                assert heard == []
            assert await write_events(conn, events) == 2  # the first three are there
        expected = sorted(f"{e.customer_id}/{e.event_id}" for e in events)
        for _ in range(100):
            if len(heard) >= len(expected):
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # and nothing more comes
        assert sorted(heard) == expected
    finally:
        await listener.remove_listener("omnihub_timeline", hear)
        await pool.release(listener)

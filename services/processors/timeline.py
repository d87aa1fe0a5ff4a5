"""Batched, idempotent writes of unified events and delivery states into PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from schemas import DeliveryStatus, UnifiedEvent

_INSERT_EVENTS = """
INSERT INTO timeline (event_id, customer_id, occurred_at, received_at, channel, direction, kind,
                      subject, body, language, thread_id, provider_message_id, command_id,
                      interaction, projected_at)
SELECT e, c, o, r, ch, d, k, s, b, l, t, p, cmd, i::jsonb, clock_timestamp()
FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
            $12::text[], $13::uuid[], $14::text[]) AS u(e, c, o, r, ch, d, k, s, b, l, t, p, cmd, i)
ON CONFLICT (event_id) DO NOTHING
"""

_INSERT_STATES = """
INSERT INTO delivery_states (command_id, state, rank, occurred_at, provider_message_id,
                             error_code, error_message)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int2[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[])
ON CONFLICT (command_id, state) DO NOTHING
"""


def _command_id(event: UnifiedEvent) -> str | None:
    value = event.interaction.attributes.get("command_id")
    return str(value) if value else None


async def current_customers(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, uuid.UUID]:
    """Map customer ids to the live customer they answer as, holding a share lock on them.

    A merge holds the rows FOR UPDATE, so a batch written here either waits for the merge
    and follows the alias, or commits first and is then moved by the merge.
    """
    rows = await conn.fetch(
        "SELECT id, merged_into FROM customers WHERE id = ANY($1::uuid[]) ORDER BY id FOR SHARE",
        sorted(set(ids)),
    )
    return {r["id"]: r["merged_into"] or r["id"] for r in rows}


async def write_events(conn: asyncpg.Connection, events: Sequence[UnifiedEvent]) -> int:
    """Insert unified events into the timeline in a transaction of their own."""
    if not events:
        return 0
    async with conn.transaction():
        return await insert_events(conn, events)


async def insert_events(conn: asyncpg.Connection, events: Sequence[UnifiedEvent]) -> int:
    """Insert unified events into the timeline (in the caller's transaction, which holds the
    share locks on their customers until it ends); an event id already there is skipped."""
    if not events:
        return 0
    alias = await current_customers(conn, [e.customer_id for e in events])
    return await _insert_events(conn, events, alias)


async def _insert_events(
    conn: asyncpg.Connection, events: Sequence[UnifiedEvent], alias: dict[uuid.UUID, uuid.UUID]
) -> int:
    rows = [
        (
            e.event_id,
            alias.get(e.customer_id, e.customer_id),
            e.interaction.occurred_at,
            e.interaction.received_at,
            e.interaction.channel.value,
            e.interaction.direction.value,
            e.interaction.kind.value,
            e.interaction.subject,
            e.interaction.text,
            e.interaction.language,
            e.interaction.thread.id if e.interaction.thread else None,
            e.interaction.provider_message_id,
            _command_id(e),
            e.interaction.model_dump_json(),
        )
        for e in events
    ]
    status = await conn.execute(_INSERT_EVENTS, *(list(c) for c in zip(*rows, strict=True)))
    return int(status.rsplit(" ", 1)[-1])


async def write_states(conn: asyncpg.Connection, states: Sequence[DeliveryStatus]) -> int:
    """Record delivery states; the timeline shows the highest-ranked one per message."""
    if not states:
        return 0
    rows = [
        (
            s.command_id,
            s.state.value,
            s.state.rank,
            s.occurred_at,
            s.provider_message_id,
            s.error_code,
            s.error_message,
        )
        for s in states
    ]
    status = await conn.execute(_INSERT_STATES, *(list(c) for c in zip(*rows, strict=True)))
    return int(status.rsplit(" ", 1)[-1])

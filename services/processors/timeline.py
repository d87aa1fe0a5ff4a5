"""Batched, idempotent writes of unified events and delivery states into PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from schemas import DeliveryStatus, UnifiedEvent

#: Events land on the live customer their customer id answers as: the customers' rows are
#: locked FOR KEY SHARE in the same statement, so a batch written here either waits for a merge
#: or erasure that holds them FOR UPDATE and follows its alias (the locked row is re-read once
#: the merge commits), or commits first and is then moved by the merge. The weakest lock: it
#: does not wait for a resolution that only reads the customer (FOR NO KEY UPDATE).
#:
#: The batch comes as one JSON document, ``[{"c": customer id, "i": interaction}, ...]``, and
#: PostgreSQL takes the columns out of each interaction: it parsed every interaction's JSON for
#: the ``interaction`` column anyway, and the worker, which is where a backlog's time goes, no
#: longer builds and encodes fourteen typed arrays (see the README's benchmark section).
_INSERT_EVENTS = """
WITH batch AS (
    SELECT (x->>'c')::uuid AS c, x->'i' AS i FROM jsonb_array_elements($1::text::jsonb) AS x
), live AS (
    SELECT id, coalesce(merged_into, id) AS id_now FROM customers
    WHERE id IN (SELECT c FROM batch) ORDER BY id FOR KEY SHARE
)
INSERT INTO timeline (event_id, customer_id, occurred_at, received_at, channel, direction, kind,
                      subject, body, language, thread_id, provider_message_id, command_id,
                      interaction, projected_at)
SELECT (i->>'event_id')::uuid, coalesce(live.id_now, c), (i->>'occurred_at')::timestamptz,
       (i->>'received_at')::timestamptz, i->>'channel', i->>'direction', i->>'kind',
       i->>'subject', i->>'text', i->>'language', i->'thread'->>'id', i->>'provider_message_id',
       CASE WHEN jsonb_typeof(i->'attributes'->'command_id') = 'string'
            THEN nullif(i->'attributes'->>'command_id', '')::uuid END,
       i, clock_timestamp()
FROM batch LEFT JOIN live ON live.id = batch.c
ON CONFLICT (event_id) DO NOTHING
"""

_INSERT_STATES = """
INSERT INTO delivery_states (command_id, state, rank, occurred_at, provider_message_id,
                             error_code, error_message)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int2[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[])
ON CONFLICT (command_id, state) DO NOTHING
"""


async def write_events(conn: asyncpg.Connection, events: Sequence[UnifiedEvent]) -> int:
    """Insert unified events into the timeline in a transaction of their own."""
    if not events:
        return 0
    async with conn.transaction():
        return await insert_events(conn, events)


async def insert_events(
    conn: asyncpg.Connection,
    events: Sequence[UnifiedEvent],
    encoded: Mapping[uuid.UUID, str] | None = None,
) -> int:
    """Insert unified events into the timeline in one statement (in the caller's transaction,
    which holds the key-share locks on their customers until it ends; see ``_INSERT_EVENTS``); an
    event id already there is skipped. ``encoded`` may hold interactions' JSON already made."""
    if not events:
        return 0
    status = await conn.execute(_INSERT_EVENTS, batch_json(events, encoded or {}))
    return int(status.rsplit(" ", 1)[-1])


def batch_json(events: Sequence[UnifiedEvent], encoded: Mapping[uuid.UUID, str]) -> str:
    """The JSON document ``_INSERT_EVENTS`` takes: each event's customer id and interaction
    (from ``encoded`` where it holds it, else encoded now), spliced rather than encoded again."""
    return (
        "["
        + ",".join(
            f'{{"c":"{e.customer_id}","i":'
            f"{encoded.get(e.event_id) or e.interaction.model_dump_json()}}}"
            for e in events
        )
        + "]"
    )


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

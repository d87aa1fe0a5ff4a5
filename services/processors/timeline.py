"""Batched, idempotent writes of unified events and delivery states into PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

import asyncpg

from schemas import DeliveryStatus, UnifiedEvent

#: A reply a channel could only guess the conversation of (attribute ``thread_guess``: its
#: client dropped every reference) joins the customer's latest conversation on that channel
#: with the same ``thread_subject`` in the last 30 days; otherwise it starts its own.
#: Events land on the live customer their customer id answers as: the customers' rows are
#: locked FOR KEY SHARE in the same statement, so a batch written here either waits for a merge
#: or erasure that holds them FOR UPDATE and follows its alias (the locked row is re-read once
#: the merge commits), or commits first and is then moved by the merge. The weakest lock: it
#: does not wait for a resolution that only reads the customer (FOR NO KEY UPDATE). Events of
#: a deleted customer (in flight while it was erased) are left out: erasure marks the customer
#: and every alias deleted, and the locked row is read as it stands once the lock is granted.
_INSERT_EVENTS = """
WITH live AS (
    SELECT id, coalesce(merged_into, id) AS id_now, status FROM customers
    WHERE id = ANY($2::uuid[]) ORDER BY id FOR KEY SHARE
)
INSERT INTO timeline (event_id, customer_id, occurred_at, received_at, channel, direction, kind,
                      subject, body, language, thread_id, provider_message_id, command_id,
                      interaction, projected_at)
SELECT u.e, coalesce(live.id_now, u.c), (j->>'occurred_at')::timestamptz,
       (j->>'received_at')::timestamptz, j->>'channel', j->>'direction', j->>'kind',
       j->>'subject', j->>'text', j->>'language',
       CASE WHEN j->'attributes'->'thread_guess' = 'true' THEN coalesce((
           SELECT t.thread_id FROM timeline t
           WHERE t.customer_id = coalesce(live.id_now, u.c) AND t.channel = j->>'channel'
             AND t.occurred_at > (j->>'occurred_at')::timestamptz - interval '30 days'
             AND t.thread_id IS NOT NULL
             AND t.interaction->'attributes'->'thread_subject' = j->'attributes'->'thread_subject'
           ORDER BY t.occurred_at DESC LIMIT 1), j->'thread'->>'id')
       ELSE j->'thread'->>'id' END,
       j->>'provider_message_id',
       u.cmd, j, clock_timestamp()
FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[]) AS u(e, c, cmd, i)
CROSS JOIN LATERAL (SELECT u.i::jsonb AS j OFFSET 0) AS parsed  -- OFFSET 0: parsed once a row
LEFT JOIN live ON live.id = u.c
WHERE live.status IS DISTINCT FROM 'deleted'
ON CONFLICT (event_id) DO NOTHING
"""

#: Edits and deletions (``Interaction.revises``) applied to their original: the customer's
#: message on the same channel with that provider id (the earliest, should there be several).
#: Each revision is kept once (``timeline_revisions``; a redelivered one changes nothing), with
#: the text it replaced (a deletion's only when deleted text is kept for admins, $8), and the
#: original takes the new text (none once deleted) and the attribute ``edited_at`` or
#: ``deleted_at``. Returns the revisions applied: the rest found no original and are kept as
#: events of their own, so nothing is lost.
_APPLY_REVISIONS = """
WITH rev AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[],
                         $7::timestamptz[]) AS u(revision_id, customer, channel, original, action,
                                                 text, at)
),
target AS (
    SELECT DISTINCT ON (rev.revision_id) rev.*, t.event_id, t.body
    FROM rev
    JOIN customers c ON c.id = rev.customer
    JOIN timeline t ON t.customer_id = coalesce(c.merged_into, c.id)
                   AND t.channel = rev.channel AND t.provider_message_id = rev.original
    ORDER BY rev.revision_id, t.occurred_at
),
kept AS (
    INSERT INTO timeline_revisions (event_id, revision_id, action, revised_at, previous_text)
    SELECT event_id, revision_id, action, at, CASE WHEN action = 'edit' OR $8 THEN body END
    FROM target
    ON CONFLICT DO NOTHING
    RETURNING event_id, revision_id
),
changed AS (
    UPDATE timeline t SET
        body = CASE WHEN tg.action = 'edit' THEN tg.text END,
        interaction = jsonb_set(
            t.interaction || jsonb_build_object(
                'text', CASE WHEN tg.action = 'edit' THEN to_jsonb(tg.text) ELSE 'null'::jsonb END
            ),
            '{attributes}',
            coalesce(t.interaction->'attributes', '{}'::jsonb) || jsonb_build_object(
                CASE WHEN tg.action = 'edit' THEN 'edited_at' ELSE 'deleted_at' END, tg.at
            )
        )
    FROM kept JOIN target tg USING (event_id, revision_id)
    WHERE t.event_id = kept.event_id
    RETURNING tg.revision_id
)
SELECT revision_id FROM changed
UNION SELECT revision_id FROM target  -- found, kept before: applied already
"""

_INSERT_STATES = """
INSERT INTO delivery_states (command_id, state, rank, occurred_at, provider_message_id,
                             error_code, error_message)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::int2[], $4::timestamptz[], $5::text[],
                     $6::text[], $7::text[])
ON CONFLICT (command_id, state) DO NOTHING
"""


def _command_id(event: UnifiedEvent) -> uuid.UUID | None:
    """The outbound command an interaction reports on: a ``command_id`` attribute that is a
    UUID in text (the hub's own); anything else there (a client's number, a stray string) is
    not ours and must not fail the batch's insert."""
    value = event.interaction.attributes.get("command_id")
    if not isinstance(value, str) or not value:
        return None
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


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
    keep_deleted: bool = False,
) -> int:
    """Insert unified events into the timeline in one statement (in the caller's transaction,
    which holds the key-share locks on their customers until it ends; see ``_INSERT_EVENTS``); an
    event id already there is skipped. ``encoded`` may hold interactions' JSON already made.
    Edits and deletions are applied to their originals (``_APPLY_REVISIONS``) after the batch's
    new messages are in, so an original and its edit in one batch work."""
    if not events:
        return 0
    revisions = [e for e in events if e.interaction.revises is not None]
    if revisions:
        events = [e for e in events if e.interaction.revises is None]
        inserted = await _insert(conn, events, encoded or {}) if events else 0
        applied = await apply_revisions(conn, revisions, keep_deleted)
        unapplied = [e for e in revisions if e.event_id not in applied]
        return inserted + (await _insert(conn, unapplied, encoded or {}) if unapplied else 0)
    return await _insert(conn, events, encoded or {})


async def apply_revisions(
    conn: asyncpg.Connection, revisions: Sequence[UnifiedEvent], keep_deleted: bool
) -> set[uuid.UUID]:
    """Apply edits and deletions to their originals; the revisions that found one."""
    rows = [
        (
            e.event_id,
            e.customer_id,
            e.interaction.channel.value,
            e.interaction.revises.of,
            e.interaction.revises.action,
            e.interaction.text,
            e.interaction.occurred_at,
        )
        for e in revisions
        if e.interaction.revises is not None
    ]
    found = await conn.fetch(
        _APPLY_REVISIONS, *(list(c) for c in zip(*rows, strict=True)), keep_deleted
    )
    return {r["revision_id"] for r in found}


async def _insert(
    conn: asyncpg.Connection, events: Sequence[UnifiedEvent], known: Mapping[uuid.UUID, str]
) -> int:
    status = await conn.execute(
        _INSERT_EVENTS,
        [e.event_id for e in events],
        [e.customer_id for e in events],
        [_command_id(e) for e in events],
        [known.get(e.event_id) or e.interaction.model_dump_json() for e in events],
    )
    return int(status.rsplit(" ", 1)[-1])


#: Addresses a provider said cannot receive, marked so on the identity of the customer the
#: command was for (recorded by the dispatcher before it sent, so a report arriving before the
#: sent message reached the timeline still finds it); the newest report wins.
_UNDELIVERABLE = """
UPDATE identities i SET undeliverable_since = u.at, undeliverable_reason = u.reason
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[])
     AS u(command_id, type, scope, value, at, reason)
JOIN outbound_messages o ON o.command_id = u.command_id
JOIN customers c ON c.id = o.customer_id
WHERE (i.type, i.scope, i.value) = (u.type, u.scope, u.value)
  AND i.customer_id = coalesce(c.merged_into, c.id)
  AND (i.undeliverable_since IS NULL OR i.undeliverable_since < u.at)
"""


async def mark_undeliverable(conn: asyncpg.Connection, states: Sequence[DeliveryStatus]) -> None:
    """Mark the addresses the states say cannot receive."""
    hard = [(s, s.undeliverable) for s in states if s.undeliverable is not None]
    if hard:
        await conn.execute(
            _UNDELIVERABLE,
            [s.command_id for s, _ in hard],
            [i.type.value for _, i in hard],
            [i.scope for _, i in hard],
            [i.value for _, i in hard],
            [s.occurred_at for s, _ in hard],
            [" ".join(p for p in (s.error_code, s.error_message) if p)[:500] for s, _ in hard],
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

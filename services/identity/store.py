"""Reading and writing the identity graph: locks, snapshots, set-based writes, the link log."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from schemas import CustomerEvent
from services.identity import profile
from services.identity.keys import Key, lock_id

if TYPE_CHECKING:
    from services.identity.resolver import Writes
    from services.identity.rules import IdentityRules


@dataclass(frozen=True)
class LogRow:
    """One entry of the append-only link log."""

    key: Key
    customer: uuid.UUID | None
    action: str
    decision: str
    rule: str
    reason: str
    event_id: uuid.UUID | None
    other: uuid.UUID | None = None
    actor: str = "resolver"


@dataclass(frozen=True)
class CustomerRow:
    """A locked customer."""

    id: uuid.UUID
    created_at: datetime
    merge_count: int


@dataclass
class Snapshot:
    """What the batch's identities and their customers look like, under lock."""

    mapping: dict[Key, uuid.UUID] = field(default_factory=dict)
    matching: dict[Key, str] = field(default_factory=dict)
    sightings: dict[Key, set[uuid.UUID]] = field(default_factory=dict)
    separations: set[frozenset[Key]] = field(default_factory=set)
    customers: list[CustomerRow] = field(default_factory=list)
    members: dict[uuid.UUID, set[Key]] = field(default_factory=dict)


def columns(keys: Iterable[Key]) -> tuple[list[str], list[str], list[str]]:
    """Three parallel arrays of a list of keys, for unnest()."""
    keys = list(keys)
    return [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]


async def lock_keys(conn: asyncpg.Connection, keys: Sequence[Key]) -> None:
    """Take transaction-scoped advisory locks on identity values, in one sorted statement."""
    if keys:
        ids = sorted({lock_id(k) for k in keys})
        await conn.execute(
            "SELECT count(pg_advisory_xact_lock(l)) FROM (SELECT unnest($1::bigint[]) AS l"
            " ORDER BY 1) AS ordered",
            ids,
        )


#: The customers to lock: those named ($1), and the owners of the identity values given ($2-$4).
_LOCK_CUSTOMERS = """
SELECT id, created_at, merge_count, status, merged_into FROM customers
WHERE id = ANY($1::uuid[])
   OR id IN (SELECT i.customer_id FROM identities i
             JOIN unnest($2::text[], $3::text[], $4::text[]) AS k(type, scope, value)
             USING (type, scope, value))
ORDER BY id FOR NO KEY UPDATE
"""


async def lock_customers(
    conn: asyncpg.Connection, ids: Iterable[uuid.UUID], keys: Sequence[Key] = ()
) -> list[CustomerRow]:
    """Lock customer rows (sorted, FOR NO KEY UPDATE): those of ``ids`` and the owners of
    ``keys`` as they stand, following merged ones to their survivor; return the live ones.

    The lock serialises resolutions, manual changes and erasures of the same customers, but
    not timeline writes (FOR KEY SHARE, see ``services.processors.timeline``): the batch
    resolved next no longer waits for the one before it to be written. The customers a batch
    merges away are then locked FOR UPDATE (``lock_merged``), which timeline writes wait for.
    """
    locked: dict[uuid.UUID, Any] = {}
    rows = await conn.fetch(_LOCK_CUSTOMERS, sorted(set(ids)), *columns(keys))
    while rows:
        locked.update((row["id"], row) for row in rows)
        survivors = {r["merged_into"] for r in rows if r["merged_into"] is not None}
        follow = sorted(survivors - set(locked))  # merged ones: their survivors, next round
        rows = await conn.fetch(_LOCK_CUSTOMERS, follow, *columns(())) if follow else []
    return [
        CustomerRow(r["id"], r["created_at"], r["merge_count"])
        for r in locked.values()
        if r["status"] == "active"
    ]


#: Everything the decider reads, in one statement (one snapshot): the batch's identities ($1-$3)
#: with their owners, the identities of the customers locked so far ($4), which customers
#: each of the batch's values was seen with, and the separations involving any of these.
_SNAPSHOT = """
WITH k AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]) AS k(type, scope, value)),
     members AS (SELECT type, scope, value, customer_id FROM identities
                 WHERE customer_id = ANY($4::uuid[])),
     related AS (SELECT * FROM k UNION SELECT type, scope, value FROM members)
SELECT 'identity' AS part, i.type, i.scope, i.value, i.customer_id, i.matching,
       NULL AS b_type, NULL AS b_scope, NULL AS b_value
FROM identities i JOIN k USING (type, scope, value)
UNION ALL
SELECT 'member', type, scope, value, customer_id, NULL, NULL, NULL, NULL FROM members
UNION ALL
SELECT 'sighting', s.type, s.scope, s.value, s.customer_id, NULL, NULL, NULL, NULL
FROM identity_sightings s JOIN k USING (type, scope, value)
UNION ALL
SELECT 'separation', a_type, a_scope, a_value, NULL, NULL, b_type, b_scope, b_value
FROM identity_separations
WHERE (a_type, a_scope, a_value) IN (SELECT * FROM related)
   OR (b_type, b_scope, b_value) IN (SELECT * FROM related)
"""


def _read(rows: Iterable[asyncpg.Record], customers: dict[uuid.UUID, CustomerRow]) -> Snapshot:
    """The snapshot of one ``_SNAPSHOT`` answer, with the customers locked for it."""
    snap = Snapshot(customers=list(customers.values()))
    for r in rows:
        key: Key = (r["type"], r["scope"], r["value"])
        part = r["part"]
        if part == "identity":
            snap.mapping[key] = r["customer_id"]
            snap.matching[key] = r["matching"]
        elif part == "member":
            snap.members.setdefault(r["customer_id"], set()).add(key)
        elif part == "sighting":
            snap.sightings.setdefault(key, set()).add(r["customer_id"])
        else:
            snap.separations.add(frozenset((key, (r["b_type"], r["b_scope"], r["b_value"]))))
    return snap


async def snapshot(
    conn: asyncpg.Connection, keys: Sequence[Key], hints: Sequence[uuid.UUID] = ()
) -> Snapshot:
    """Lock the keys and their customers; read everything the decider needs.

    Round trips: the key locks; the locks of the customers the values (and hints) name, found
    in the same statement; one read. A read naming a customer not locked yet (an identity
    moved while the locks were awaited) locks it and reads again.
    """
    await lock_keys(conn, keys)
    customers = {row.id: row for row in await lock_customers(conn, hints, keys)}
    asked = set(hints)
    while True:
        rows = await conn.fetch(_SNAPSHOT, *columns(keys), list(customers))
        snap = _read(rows, customers)
        missing = set(snap.mapping.values()) - set(customers) - asked
        if not missing:  # (a value owned by a customer that is not live is not locked again)
            return snap
        asked |= missing
        for row in await lock_customers(conn, missing):
            customers[row.id] = row


_INSERT_LOG = """
INSERT INTO identity_link_log (type, scope, value, customer_id, action, decision, rule, reason,
                               event_id, other_customer, actor)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::uuid[], $10::uuid[], $11::text[])
"""


def _log_columns(rows: Sequence[LogRow]) -> list[list[Any]]:
    """The link log rows as parallel arrays, in the link log's column order."""
    return [
        [r.key[0] for r in rows],
        [r.key[1] for r in rows],
        [r.key[2] for r in rows],
        [r.customer for r in rows],
        [r.action for r in rows],
        [r.decision for r in rows],
        [r.rule for r in rows],
        [r.reason for r in rows],
        [r.event_id for r in rows],
        [r.other for r in rows],
        [r.actor for r in rows],
    ]


async def write_log(conn: asyncpg.Connection, rows: Sequence[LogRow]) -> None:
    """Append entries to the link log in one statement."""
    if rows:
        await conn.execute(_INSERT_LOG, *_log_columns(rows))


async def lock_merged(conn: asyncpg.Connection, merged: Sequence[uuid.UUID]) -> None:
    """Lock the customers a batch merges away FOR UPDATE, all at once and in id order: the
    order timeline writes lock them in, so the two cannot deadlock
    (docs/design-notes.md#servicesidentitystorepy)."""
    if merged:
        await conn.execute(
            "SELECT 1 FROM customers WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
            sorted(set(merged)),
        )


#: One merge's moves in one statement (one round trip, not one a move): identities
#: (each logged), the customer's status and the aliases that named it, its timeline and its
#: consents (the later change of each survives). Every part reads the snapshot from before the
#: statement, and no two parts touch the same row.
_MOVE = """
WITH moved AS (
    UPDATE identities SET customer_id = $2 WHERE customer_id = $1 RETURNING type, scope, value
), logged AS (
    INSERT INTO identity_link_log (type, scope, value, customer_id, action, decision, rule,
                                   reason, event_id, other_customer, actor)
    SELECT type, scope, value, $2, 'merge', 'accepted', 'merge', $3, $4, $1, $5 FROM moved
), merged AS (
    UPDATE customers SET status = 'merged', merged_into = $2 WHERE id = $1
), aliases AS (
    UPDATE customers SET merged_into = $2 WHERE merged_into = $1
), events AS (
    UPDATE timeline SET customer_id = $2 WHERE customer_id = $1
), consents_kept AS (
    INSERT INTO consents (customer_id, channel, purpose, granted, reason, source_event,
                          changed_at)
    SELECT $2, channel, purpose, granted, reason, source_event, changed_at
    FROM consents WHERE customer_id = $1
    ON CONFLICT (customer_id, channel, purpose) DO UPDATE
    SET granted = EXCLUDED.granted, reason = EXCLUDED.reason,
        source_event = EXCLUDED.source_event, changed_at = EXCLUDED.changed_at
    WHERE consents.changed_at < EXCLUDED.changed_at
), consents_gone AS (
    DELETE FROM consents WHERE customer_id = $1
)
SELECT count(*) FROM moved
"""


#: One merge: (merged, survivor, event that caused it or None, reason).
Merge = tuple[uuid.UUID, uuid.UUID, uuid.UUID | None, str]


async def move_customers(
    conn: asyncpg.Connection,
    merges: Sequence[Merge],
    rules: IdentityRules,
    *,
    actor: str = "resolver",
) -> None:
    """Merge each ``merged`` into its ``survivor``, in order: identities, timeline, consent
    and aliases (``_MOVE`` once a merge, all sent in one round trip and run in order, so a
    customer merged into one merged later in the list ends with the last), then the profiles
    (``profile.merge_all``, one read for them all).

    The caller holds every ``merged`` FOR UPDATE (``lock_merged``, or a manual merge's lock):
    timeline writes for them in flight (FOR KEY SHARE) have committed before their rows move,
    and later ones wait, then follow their aliases.
    """
    if not merges:
        return
    await conn.executemany(
        _MOVE,
        [(merged, survivor, reason, event, actor) for merged, survivor, event, reason in merges],
    )
    await profile.merge_all(conn, [(merged, survivor) for merged, survivor, _, _ in merges], rules)


#: A batch's new customers, identities, link log entries, sightings and edges, in one
#: statement (a foreign key is checked at its end, so identities may name customers it adds).
_INSERT_BATCH = """
WITH new_customers AS (
    INSERT INTO customers (id, created_at) SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
), links AS (
    INSERT INTO identities (type, scope, value, customer_id, first_event, matching)
    SELECT * FROM unnest($3::text[], $4::text[], $5::text[], $6::uuid[], $7::uuid[], $8::text[])
), log AS (
    INSERT INTO identity_link_log (type, scope, value, customer_id, action, decision, rule,
                                   reason, event_id, other_customer, actor)
    SELECT * FROM unnest($9::text[], $10::text[], $11::text[], $12::uuid[], $13::text[],
                         $14::text[], $15::text[], $16::text[], $17::uuid[], $18::uuid[],
                         $19::text[])
), sightings AS (
    INSERT INTO identity_sightings (type, scope, value, customer_id, first_event)
    SELECT * FROM unnest($20::text[], $21::text[], $22::text[], $23::uuid[], $24::uuid[])
    ON CONFLICT DO NOTHING
)
INSERT INTO identity_edges (a_type, a_scope, a_value, b_type, b_scope, b_value, event_id, source)
SELECT *, 'event' FROM unnest($25::text[], $26::text[], $27::text[], $28::text[], $29::text[],
                              $30::text[], $31::uuid[])
ON CONFLICT DO NOTHING
"""


async def _insert_batch(conn: asyncpg.Connection, writes: Writes) -> None:
    """Add what a batch decided (see ``_INSERT_BATCH``); nothing is sent if it decided none."""
    links, sightings, edges = writes.links, list(writes.sightings), list(writes.edges.items())
    if not (writes.new_customers or links or writes.log or sightings or edges):
        return
    await conn.execute(
        _INSERT_BATCH,
        [c.id for c in writes.new_customers],
        [c.created_at for c in writes.new_customers],
        *columns(link[0] for link in links),
        [link[1] for link in links],
        [link[2] for link in links],
        [link[3] for link in links],
        *_log_columns(writes.log),
        *columns(r[0] for r in sightings),
        [r[1] for r in sightings],
        [r[2] for r in sightings],
        *columns(a for (a, _), _ in edges),
        *columns(b for (_, b), _ in edges),
        [event for _, event in edges],
    )


async def apply(
    conn: asyncpg.Connection,
    writes: Writes,
    alias: dict[uuid.UUID, uuid.UUID],
    rules: IdentityRules,
) -> list[CustomerEvent]:
    """Write a batch's decisions; return the customer.merged events to publish."""
    await _insert_batch(conn, writes)
    await lock_merged(conn, [m[0] for m in writes.merges])
    await move_customers(conn, writes.merges, rules)
    if writes.merges:
        await conn.execute(
            "UPDATE customers c SET merge_count = c.merge_count + m.n FROM"
            " (SELECT merged_into AS id, count(*) + sum(merge_count) AS n FROM customers"
            "  WHERE id = ANY($1::uuid[]) GROUP BY merged_into) m WHERE c.id = m.id",
            [m[0] for m in writes.merges],
        )
    if writes.matching:
        keys = list(writes.matching)
        await conn.execute(
            "UPDATE identities i SET matching = m.matching FROM"
            " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])"
            "  AS k(type, scope, value, matching)) m"
            " WHERE (i.type, i.scope, i.value) = (m.type, m.scope, m.value)",
            *columns(keys),
            [writes.matching[k] for k in keys],
        )
    if writes.flags:
        await flag(conn, writes.flags)
    return merged_events(writes, alias)


async def add_edges(
    conn: asyncpg.Connection,
    pairs: Sequence[tuple[Key, Key]],
    events: Sequence[uuid.UUID | None],
    source: str,
) -> None:
    """Record evidence that identities belong together (idempotent)."""
    await conn.execute(
        """INSERT INTO identity_edges (a_type, a_scope, a_value, b_type, b_scope, b_value,
                                       event_id, source)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::uuid[], $8::text[])
           ON CONFLICT DO NOTHING""",
        *columns(a for a, _ in pairs),
        *columns(b for _, b in pairs),
        list(events),
        [source] * len(pairs),
    )


async def flag(conn: asyncpg.Connection, flags: dict[uuid.UUID, list[str]]) -> None:
    """Append review reasons to customers."""
    await conn.execute(
        "UPDATE customers c SET review = c.review || f.reasons::jsonb FROM"
        " (SELECT unnest($1::uuid[]) AS id, unnest($2::text[]) AS reasons) f WHERE c.id = f.id",
        list(flags),
        [json.dumps(v) for v in flags.values()],
    )


def merged_events(writes: Writes, alias: dict[uuid.UUID, uuid.UUID]) -> list[CustomerEvent]:
    """One customer.merged event per survivor of this batch."""
    by_survivor: dict[uuid.UUID, list[uuid.UUID]] = {}
    causes: dict[uuid.UUID, uuid.UUID | None] = {}
    for merged, survivor, event_id, _ in writes.merges:
        final = survivor
        while final in alias:
            final = alias[final]
        by_survivor.setdefault(final, []).append(merged)
        causes[final] = event_id
    return [
        CustomerEvent(
            type="customer.merged",
            customer_id=survivor,
            merged_ids=merged,
            reason="identities of these customers arrived in one interaction",
            caused_by=causes[survivor],
        )
        for survivor, merged in by_survivor.items()
    ]

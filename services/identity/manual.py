"""What agents decide by hand: split (real unmerge), link, unlink, merge. These win over rules.

Every operation locks in the resolver's order (identity values, then customer rows, both
sorted), so it can run while the stream processors resolve, without deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import asyncpg

from schemas import CustomerEvent, Identity
from services.identity import store
from services.identity.keys import Key, key_of
from services.identity.rules import IdentityRules


class ManualError(ValueError):
    """The request cannot be carried out as asked (HTTP 409 or 422)."""


@dataclass(frozen=True)
class Locked:
    """Live customers locked for a manual operation, with their identities."""

    members: dict[uuid.UUID, set[Key]]


async def live_id(conn: asyncpg.Connection, customer_id: uuid.UUID) -> uuid.UUID | None:
    """The live customer an id answers as (itself, or the survivor of its merge)."""
    row = await conn.fetchrow(
        "SELECT id, status, merged_into FROM customers WHERE id = $1", customer_id
    )
    if row is None or row["status"] == "deleted":
        return None
    live: uuid.UUID = row["merged_into"] or row["id"]
    return live


async def _members(conn: asyncpg.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[Key]]:
    rows = await conn.fetch(
        "SELECT type, scope, value, customer_id FROM identities WHERE customer_id = ANY($1)",
        list(ids),
    )
    found: dict[uuid.UUID, set[Key]] = {i: set() for i in ids}
    for r in rows:
        found[r["customer_id"]].add((r["type"], r["scope"], r["value"]))
    return found


async def lock(
    conn: asyncpg.Connection, ids: Iterable[uuid.UUID], extra: Iterable[Key] = ()
) -> Locked:
    """Lock the customers' identity values (and ``extra``), then the customers, in order."""
    ids = sorted(set(ids))
    extra = list(extra)
    while True:
        before = await _members(conn, ids)
        await store.lock_keys(conn, [k for ks in before.values() for k in ks] + extra)
        rows = await conn.fetch(
            "SELECT id, status FROM customers WHERE id = ANY($1) ORDER BY id FOR UPDATE", ids
        )
        if len(rows) != len(ids) or any(r["status"] != "active" for r in rows):
            raise ManualError("the customer changed (merged or deleted); reload and retry")
        after = await _members(conn, ids)
        if after == before:
            return Locked(after)
        # identities moved while we waited: take the new ones' locks too


def _components(keys: set[Key], edges: Iterable[tuple[Key, Key]]) -> list[set[Key]]:
    parent = {k: k for k in keys}

    def root(k: Key) -> Key:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in edges:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    groups: dict[Key, set[Key]] = {}
    for k in keys:
        groups.setdefault(root(k), set()).add(k)
    return sorted(groups.values(), key=lambda g: sorted(g))


async def _edges_among(conn: asyncpg.Connection, keys: set[Key]) -> list[tuple[Key, Key]]:
    rows = await conn.fetch(
        "SELECT a_type, a_scope, a_value, b_type, b_scope, b_value FROM identity_edges"
        " WHERE (a_type, a_scope, a_value) IN"
        "       (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
        *store.columns(keys),
    )
    return [((r[0], r[1], r[2]), (r[3], r[4], r[5])) for r in rows]


async def _origin(conn: asyncpg.Connection, keys: set[Key], current: uuid.UUID) -> uuid.UUID | None:
    """The customer these identities were first linked to, if it was merged into ``current``."""
    rows = await conn.fetch(
        "SELECT DISTINCT ON (l.type, l.scope, l.value) l.customer_id FROM identity_link_log l"
        " JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(type, scope, value)"
        "   ON (l.type, l.scope, l.value) = (k.type, k.scope, k.value)"
        " WHERE l.decision = 'accepted' AND l.action IN ('link', 'manual_link')"
        " ORDER BY l.type, l.scope, l.value, l.seq",
        *store.columns(keys),
    )
    origins = {r["customer_id"] for r in rows}
    if len(origins) != 1 or len(rows) != len(keys):
        return None
    origin = origins.pop()
    merged = await conn.fetchval(
        "SELECT merged_into FROM customers WHERE id = $1 AND status = 'merged'", origin
    )
    return origin if merged == current else None


async def _separate(conn: asyncpg.Connection, left: set[Key], right: set[Key], reason: str) -> None:
    pairs = [(a, b) for a in left for b in right]
    if not pairs:
        return
    await conn.execute(
        """INSERT INTO identity_separations (a_type, a_scope, a_value, b_type, b_scope,
                                             b_value, reason)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                $6::text[], $7::text[])
           ON CONFLICT DO NOTHING""",
        *store.columns(a for a, _ in pairs),
        *store.columns(b for _, b in pairs),
        [reason] * len(pairs),
    )


async def _unseparate(conn: asyncpg.Connection, left: set[Key], right: set[Key]) -> None:
    for a_side, b_side in ((left, right), (right, left)):
        await conn.execute(
            "DELETE FROM identity_separations WHERE"
            " (a_type, a_scope, a_value) IN (SELECT * FROM unnest($1::text[], $2::text[],"
            "  $3::text[])) AND (b_type, b_scope, b_value) IN (SELECT * FROM"
            "  unnest($4::text[], $5::text[], $6::text[]))",
            *store.columns(a_side),
            *store.columns(b_side),
        )


async def _reattribute(
    conn: asyncpg.Connection, source: uuid.UUID, owners: dict[Key, uuid.UUID]
) -> None:
    """Give the source's events whose first identity moved to that identity's new customer."""
    if not owners:
        return
    keys = list(owners)
    await conn.execute(
        """UPDATE timeline t SET customer_id = m.customer_id
           FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[])
                AS m(type, scope, value, customer_id)
           WHERE t.customer_id = $5
             AND t.interaction->'identities'->0->>'type' = m.type
             AND coalesce(t.interaction->'identities'->0->>'scope', '') = m.scope
             AND t.interaction->'identities'->0->>'value' = m.value""",
        *store.columns(keys),
        [owners[k] for k in keys],
        source,
    )


async def _move(
    conn: asyncpg.Connection,
    keys: set[Key],
    source: uuid.UUID,
    target: uuid.UUID,
    action: str,
    reason: str,
    actor: str,
) -> None:
    await conn.execute(
        """UPDATE identities i SET customer_id = $4
           FROM unnest($1::text[], $2::text[], $3::text[]) AS k(type, scope, value)
           WHERE (i.type, i.scope, i.value) = (k.type, k.scope, k.value)""",
        *store.columns(keys),
        target,
    )
    await store.write_log(
        conn,
        [
            store.LogRow(k, target, action, "accepted", "manual", reason, None, source, actor)
            for k in sorted(keys)
        ],
    )


async def split(
    conn: asyncpg.Connection,
    customer_id: uuid.UUID,
    identities: Sequence[Identity],
    reason: str,
    actor: str,
    action: str = "split",
) -> CustomerEvent:
    """Cut ``identities`` out of the customer; recompute who owns them and their events.

    The moved identities are separated from the ones that stay (no rule will join them
    again); they are grouped by the evidence that links them (identity_edges); each group
    becomes a customer again: the one it was merged from when its link log says so, else a
    new one. Events go with their first identity.
    """
    async with conn.transaction():
        current = await live_id(conn, customer_id)
        if current is None:
            raise ManualError("no such customer")
        moving = {key_of(i) for i in identities}
        locked = await lock(conn, [current], moving)
        members = locked.members[current]
        if not moving or not moving <= members:
            raise ManualError("every identity to move must belong to the customer")
        staying = members - moving
        if not staying:
            raise ManualError("a split must leave at least one identity with the customer")
        await _separate(conn, moving, staying, reason)
        edges = [
            e for e in await _edges_among(conn, members) if (e[0] in moving) == (e[1] in moving)
        ]
        owners: dict[Key, uuid.UUID] = {}
        new_ids: list[uuid.UUID] = []
        for group in _components(moving, edges):
            origin = await _origin(conn, group, current)
            if origin is not None:
                await conn.execute(
                    "UPDATE customers SET status = 'active', merged_into = NULL WHERE id = $1",
                    origin,
                )
                target = origin
            else:
                target = uuid.uuid4()
                await conn.execute("INSERT INTO customers (id) VALUES ($1)", target)
            await _move(conn, group, current, target, action, reason, actor)
            owners.update(dict.fromkeys(group, target))
            new_ids.append(target)
        await _reattribute(conn, current, owners)
    return CustomerEvent(
        type="customer.split",
        customer_id=current,
        new_ids=new_ids,
        identities=list(identities),
        reason=reason,
    )


async def link(
    conn: asyncpg.Connection,
    customer_id: uuid.UUID,
    identity: Identity,
    reason: str,
    actor: str,
) -> uuid.UUID | None:
    """Attach ``identity`` to the customer, taking it from whoever had it; returns that one."""
    key = key_of(identity)
    async with conn.transaction():
        current = await live_id(conn, customer_id)
        if current is None:
            raise ManualError("no such customer")
        owner: uuid.UUID | None = await conn.fetchval(
            "SELECT customer_id FROM identities WHERE (type, scope, value) = ($1, $2, $3)", *key
        )
        locked = await lock(conn, {current} | ({owner} if owner else set()), [key])
        if owner == current:
            return None
        members = locked.members[current]
        await _unseparate(conn, {key}, members)
        if owner is None:
            await conn.execute(
                "INSERT INTO identities (type, scope, value, customer_id) VALUES ($1,$2,$3,$4)",
                *key,
                current,
            )
            await store.write_log(
                conn,
                [
                    store.LogRow(
                        key, current, "manual_link", "accepted", "manual", reason, None, None, actor
                    )
                ],
            )
        else:
            await _move(conn, {key}, owner, current, "manual_link", reason, actor)
            await _separate(conn, {key}, locked.members[owner] - {key}, reason)
            await _reattribute(conn, owner, {key: current})
        if members:
            anchor = min(members)
            await store.add_edges(conn, [(anchor, key)], [None], "manual")
    return owner


async def merge(
    conn: asyncpg.Connection,
    survivor_id: uuid.UUID,
    other_id: uuid.UUID,
    reason: str,
    actor: str,
    rules: IdentityRules,
) -> CustomerEvent:
    """Merge ``other`` into ``survivor`` by hand, whatever the protection rules say."""
    async with conn.transaction():
        survivor = await live_id(conn, survivor_id)
        other = await live_id(conn, other_id)
        if survivor is None or other is None:
            raise ManualError("no such customer")
        if survivor == other:
            raise ManualError("these are already one customer")
        locked = await lock(conn, [survivor, other])
        await _unseparate(conn, locked.members[survivor], locked.members[other])
        await store.move_customers(conn, [(other, survivor, None, reason)], rules, actor=actor)
        await conn.execute(
            "UPDATE customers SET merge_count = merge_count + 1 WHERE id = $1", survivor
        )
    return CustomerEvent(
        type="customer.merged", customer_id=survivor, merged_ids=[other], reason=reason
    )

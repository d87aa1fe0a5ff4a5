"""Department queues: routed interactions and their work state (open, claimed, done)."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from schemas import Department
from services.console.users import ConsoleRole, User

LIMIT = 100

#: Which states each queue filter shows.
FILTERS = {"open": ["open", "claimed"], "mine": ["claimed"], "done": ["done"]}

_LIST = """
SELECT r.event_id, t.customer_id, r.department, r.copies, r.priority, r.tags, r.rule_id,
       r.reason, r.routed_at, coalesce(t.language, r.language) AS language, t.channel, t.kind,
       t.subject, t.body, t.occurred_at, coalesce(q.state, 'open') AS state, q.assignee,
       u.username AS assignee_name, coalesce(p.name, c.display_name) AS customer_name,
       (SELECT i.value FROM identities i WHERE i.customer_id = t.customer_id
         ORDER BY i.created_at LIMIT 1) AS customer_identity
FROM routing_decisions r
JOIN timeline t ON t.event_id = r.event_id
LEFT JOIN console_queue_items q ON q.event_id = r.event_id
LEFT JOIN console_users u ON u.id = q.assignee
LEFT JOIN customers c ON c.id = t.customer_id
LEFT JOIN customer_profiles p ON p.customer_id = t.customer_id
WHERE (r.department = $1 OR r.copies @> ARRAY[$1]::text[])
  AND coalesce(q.state, 'open') = ANY($2::text[])
  AND ($3::uuid IS NULL OR q.assignee = $3)
ORDER BY r.routed_at DESC, r.event_id DESC
LIMIT $4
"""


class QueueError(ValueError):
    """The queue action is not possible as asked (conflict or not allowed)."""


async def listing(
    conn: asyncpg.Connection, department: Department, view: str, user: User
) -> list[dict[str, Any]]:
    """The department's routed interactions in ``view`` (open, mine, done), newest first."""
    states = FILTERS.get(view, FILTERS["open"])
    mine = user.id if view == "mine" else None
    rows = await conn.fetch(_LIST, department.value, states, mine, LIMIT)
    return [dict(r) for r in rows]


async def counts(conn: asyncpg.Connection) -> dict[str, int]:
    """Open items per department (primary or copy), for the navigation."""
    rows = await conn.fetch(
        """SELECT d AS department, count(*) AS n
           FROM routing_decisions r
           CROSS JOIN LATERAL unnest(array_prepend(r.department, r.copies)) AS d
           LEFT JOIN console_queue_items q ON q.event_id = r.event_id
           WHERE coalesce(q.state, 'open') <> 'done'
             AND EXISTS (SELECT 1 FROM timeline t WHERE t.event_id = r.event_id)
           GROUP BY d"""
    )
    return {r["department"]: r["n"] for r in rows}


async def departments_of(conn: asyncpg.Connection, event_id: uuid.UUID) -> set[Department]:
    """The departments an event was routed to (primary and copies)."""
    row = await conn.fetchrow(
        "SELECT department, copies FROM routing_decisions WHERE event_id = $1", event_id
    )
    if row is None:
        return set()
    return {Department(d) for d in [row["department"], *row["copies"]]}


async def _check_visible(conn: asyncpg.Connection, event_id: uuid.UUID, user: User) -> None:
    departments = await departments_of(conn, event_id)
    if not departments:
        raise QueueError("no such routed interaction")
    if not any(user.can_see(d) for d in departments):
        raise PermissionError("not in your departments")


async def _current(conn: asyncpg.Connection, event_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT state, assignee FROM console_queue_items WHERE event_id = $1 FOR UPDATE", event_id
    )


async def _write(
    conn: asyncpg.Connection, event_id: uuid.UUID, state: str, assignee: uuid.UUID | None, by: User
) -> None:
    await conn.execute(
        """INSERT INTO console_queue_items (event_id, state, assignee, updated_by)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (event_id) DO UPDATE SET state = EXCLUDED.state,
               assignee = EXCLUDED.assignee, updated_by = EXCLUDED.updated_by,
               updated_at = now()""",
        event_id,
        state,
        assignee,
        by.id,
    )


async def claim(conn: asyncpg.Connection, event_id: uuid.UUID, user: User) -> None:
    """Take an open interaction; someone else's claim is not taken over (assign does that)."""
    async with conn.transaction():
        await _check_visible(conn, event_id, user)
        current = await _current(conn, event_id)
        if current is not None and current["state"] == "done":
            raise QueueError("this interaction is done")
        if current is not None and current["assignee"] not in (None, user.id):
            raise QueueError("someone else claimed it; a supervisor can reassign it")
        await _write(conn, event_id, "claimed", user.id, user)


async def assign(
    conn: asyncpg.Connection, event_id: uuid.UUID, assignee: uuid.UUID, user: User
) -> None:
    """A supervisor (or admin) gives an interaction to a user of one of its departments."""
    if not user.role.at_least(ConsoleRole.SUPERVISOR):
        raise PermissionError("assigning needs the supervisor role")
    async with conn.transaction():
        await _check_visible(conn, event_id, user)
        row = await conn.fetchrow(
            "SELECT role, departments FROM console_users WHERE id = $1 AND NOT disabled", assignee
        )
        departments = {d.value for d in await departments_of(conn, event_id)}
        if row is None or (row["role"] == "agent" and not departments & set(row["departments"])):
            raise QueueError("that user does not work in this interaction's departments")
        await _current(conn, event_id)
        await _write(conn, event_id, "claimed", assignee, user)


async def done(conn: asyncpg.Connection, event_id: uuid.UUID, user: User) -> None:
    """Mark an interaction done: its assignee, or a supervisor, may."""
    async with conn.transaction():
        await _check_visible(conn, event_id, user)
        current = await _current(conn, event_id)
        assignee = current["assignee"] if current else None
        if assignee not in (None, user.id) and not user.role.at_least(ConsoleRole.SUPERVISOR):
            raise QueueError("only its assignee or a supervisor can close it")
        await _write(conn, event_id, "done", assignee or user.id, user)


async def logged_by_hand(conn: asyncpg.Connection, event_id: uuid.UUID, user: User) -> None:
    """An interaction an agent logged is their own work, already handled: done from the start."""
    await _write(conn, event_id, "done", user.id, user)

"""The privacy log: which customer (by id only), what was done, why, by whom, when."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg


async def record(
    conn: asyncpg.Connection, customer_id: uuid.UUID, action: str, reason: str, actor: str
) -> None:
    """Append one entry (the reason must already be redacted)."""
    await conn.execute(
        "INSERT INTO privacy_log (customer_id, action, reason, actor) VALUES ($1, $2, $3, $4)",
        customer_id,
        action,
        reason,
        actor,
    )


async def entries(
    conn: asyncpg.Connection, customer_id: uuid.UUID | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Newest entries first, of one customer or of all."""
    rows = await conn.fetch(
        "SELECT seq, customer_id, action, reason, actor, at FROM privacy_log"
        " WHERE $1::uuid IS NULL OR customer_id = $1 ORDER BY seq DESC LIMIT $2",
        customer_id,
        limit,
    )
    return [dict(r) for r in rows]

"""Queries behind the customer and timeline endpoints (keyset paging, newest first)."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from schemas import Identity
from services.customers import consent
from services.identity import profile

_TIMELINE = """
SELECT t.event_id, t.occurred_at, t.received_at, t.channel, t.direction, t.kind, t.subject,
       t.body, coalesce(t.language, r.language) AS language, t.thread_id, t.provider_message_id,
       t.command_id, coalesce(r.department, t.department) AS department,
       t.interaction, d.state AS delivery_state, d.error_code AS delivery_error_code,
       d.error_message AS delivery_error
FROM timeline t
LEFT JOIN routing_decisions r ON r.event_id = t.event_id
LEFT JOIN LATERAL (
    SELECT state, error_code, error_message FROM delivery_states s
    WHERE s.command_id = t.command_id ORDER BY rank DESC, occurred_at DESC LIMIT 1
) d ON t.command_id IS NOT NULL
WHERE t.customer_id = $1 AND ($2::timestamptz IS NULL OR (t.occurred_at, t.event_id) < ($2, $3))
ORDER BY t.occurred_at DESC, t.event_id DESC
LIMIT $4
"""


def encode_cursor(occurred_at: datetime, event_id: uuid.UUID) -> str:
    """Opaque cursor of the last row of a page."""
    raw = json.dumps([occurred_at.isoformat(), str(event_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Inverse of encode_cursor; ValueError when the cursor is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        occurred, event = json.loads(raw)
        return datetime.fromisoformat(occurred), uuid.UUID(event)
    except Exception as exc:
        raise ValueError("invalid cursor") from exc


async def find_by_identity(conn: asyncpg.Connection, identity: Identity) -> list[uuid.UUID]:
    """Return the customers linked to ``identity`` (at most one today)."""
    rows = await conn.fetch(
        "SELECT customer_id FROM identities WHERE type = $1 AND scope = $2 AND value = $3",
        identity.type.value,
        identity.scope,
        identity.value,
    )
    return [r["customer_id"] for r in rows]


async def customer(conn: asyncpg.Connection, customer_id: uuid.UUID) -> dict[str, Any] | None:
    """Return a live customer with identities, consents, profile and review flags, or None.

    A merged-away id answers as an alias: the survivor is returned, with ``requested_id``.
    """
    row = await conn.fetchrow(
        "SELECT c.id, c.created_at, c.display_name, c.status, c.review::text AS review,"
        " c.merge_count FROM customers c"
        " WHERE c.id = (SELECT coalesce(merged_into, id) FROM customers WHERE id = $1)"
        " AND c.status = 'active'",
        customer_id,
    )
    if row is None:
        return None
    requested = customer_id
    customer_id = row["id"]
    identities = await conn.fetch(
        "SELECT type, scope, value, created_at FROM identities WHERE customer_id = $1"
        " ORDER BY created_at, type, value",
        customer_id,
    )
    found_profile = await profile.read(conn, customer_id)
    aliases = await conn.fetch(
        "SELECT id FROM customers WHERE merged_into = $1 ORDER BY id", customer_id
    )
    return {
        "id": str(row["id"]),
        **({"requested_id": str(requested)} if requested != customer_id else {}),
        "created_at": row["created_at"].isoformat(),
        "display_name": row["display_name"],
        "aliases": [str(r["id"]) for r in aliases],
        "merge_count": row["merge_count"],
        "review": json.loads(row["review"]),
        "profile": _profile_view(found_profile),
        "consents": await consent.listing(conn, customer_id),
        "identities": [
            {
                "type": r["type"],
                "scope": r["scope"],
                "value": r["value"],
                "linked_at": r["created_at"].isoformat(),
            }
            for r in identities
        ],
    }


def _profile_view(found: dict[str, Any] | None) -> dict[str, Any]:
    if found is None:
        return {}
    view = {
        k: found[k] for k in ("name", "language", "preferred_channel", "addresses", "attributes")
    }
    view["birth_date"] = found["birth_date"].isoformat() if found["birth_date"] else None
    return view


def _item(row: asyncpg.Record) -> dict[str, Any]:
    interaction = row["interaction"]
    item = {
        "event_id": str(row["event_id"]),
        "occurred_at": row["occurred_at"].isoformat(),
        "received_at": row["received_at"].isoformat(),
        "channel": row["channel"],
        "direction": row["direction"],
        "kind": row["kind"],
        "subject": row["subject"],
        "text": row["body"],
        "language": row["language"],
        "thread_id": row["thread_id"],
        "department": row["department"],
        "provider_message_id": row["provider_message_id"],
        "attachments": interaction.get("attachments", []),
        "identities": interaction.get("identities", []),
    }
    if row["command_id"] is not None:
        item["command_id"] = str(row["command_id"])
        item["delivery"] = {
            "state": row["delivery_state"],
            "error_code": row["delivery_error_code"],
            "error": row["delivery_error"],
        }
    return item


async def timeline_page(
    conn: asyncpg.Connection, customer_id: uuid.UUID, limit: int, cursor: str | None
) -> dict[str, Any]:
    """Return one page of the customer's timeline, newest first, with the next cursor."""
    after_time, after_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await conn.fetch(_TIMELINE, customer_id, after_time, after_id, limit + 1)
    items = [_item(r) for r in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        last = rows[limit - 1]
        next_cursor = encode_cursor(last["occurred_at"], last["event_id"])
    return {"customer_id": str(customer_id), "items": items, "next_cursor": next_cursor}

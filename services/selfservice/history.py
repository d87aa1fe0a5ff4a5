"""What a customer sees of their own timeline: what they sent and what was sent to them, on
every channel, newest first, paged by keyset. Never internal notes, what agents logged by
hand, delivery reports, routing data, or a message the hub refused or failed to send."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from channels import registry
from schemas import Channel, Kind
from services.customers.store import decode_cursor, encode_cursor

PAGE = 20
#: Kinds a customer never sees; the hand log is agents' own record of a visit or a call.
HIDDEN_KINDS = [Kind.NOTE.value, Kind.STATUS.value]
HIDDEN_CHANNELS = [Channel.MANUAL.value]
UNSENT = ["refused", "failed"]
#: What a customer's reply cannot join: their own changes on these pages.
NOT_ANSWERABLE = {Channel.SELF_SERVICE.value}

_VISIBLE = """
FROM timeline t
LEFT JOIN LATERAL (
    SELECT state FROM delivery_states s
    WHERE s.command_id = t.command_id ORDER BY rank DESC, occurred_at DESC LIMIT 1
) d ON t.command_id IS NOT NULL
WHERE t.customer_id = $1 AND t.channel <> ALL($2::text[]) AND t.kind <> ALL($3::text[])
  AND (t.direction = 'inbound' OR d.state IS NULL OR d.state <> ALL($4::text[]))
"""

_PAGE = f"""
SELECT t.event_id, t.occurred_at, t.channel, t.direction, t.kind, t.subject, t.body,
       t.interaction->'attachments' AS attachments, d.state,
       t.interaction->'attributes'->>'edited_at' AS edited_at,
       t.interaction->'attributes'->>'deleted_at' AS deleted_at
{_VISIBLE}
  AND ($5::timestamptz IS NULL OR (t.occurred_at, t.event_id) < ($5, $6))
ORDER BY t.occurred_at DESC, t.event_id DESC
LIMIT $7
"""

_ONE = f"SELECT t.interaction {_VISIBLE} AND t.event_id = $5"


@dataclass(frozen=True)
class HistoryPage:
    """One page of a customer's history and the cursor of the next (None: the last page)."""

    items: list[dict[str, Any]]
    next_cursor: str | None


def _label(channel: str) -> str:
    return "These pages" if channel == Channel.SELF_SERVICE.value else registry.label(channel)


def _view(row: asyncpg.Record) -> dict[str, Any]:
    found = row["attachments"]
    attachments = json.loads(found) if isinstance(found, str) else (found or [])
    event_id = str(row["event_id"])
    occurred: datetime = row["occurred_at"]
    return {
        "event_id": event_id,
        "when": occurred.strftime("%Y-%m-%d %H:%M UTC"),
        "when_iso": occurred.isoformat(),
        "channel": row["channel"],
        "channel_label": _label(row["channel"]),
        "incoming": row["direction"] == "inbound",
        "kind": row["kind"],
        "subject": row["subject"],
        "text": row["body"],
        "pending": row["direction"] == "outbound" and row["state"] in (None, "queued", "sending"),
        "answerable": row["channel"] not in NOT_ANSWERABLE and not row["deleted_at"],
        "edited": bool(row["edited_at"]),
        "deleted": bool(row["deleted_at"]),
        "files": [
            {
                "name": str(a.get("name") or "file"),
                "url": f"/me/files/{event_id}/{n}" if a.get("blob") else None,
            }
            for n, a in enumerate(attachments, start=1)
        ],
    }


async def page(conn: asyncpg.Connection, customer_id: uuid.UUID, cursor: str | None) -> HistoryPage:
    """One page of the customer's history (ValueError for a cursor not of ours)."""
    after_time, after_id = decode_cursor(cursor) if cursor else (None, None)
    rows = await conn.fetch(
        _PAGE,
        customer_id,
        HIDDEN_CHANNELS,
        HIDDEN_KINDS,
        UNSENT,
        after_time,
        after_id,
        PAGE + 1,
    )
    following = None
    if len(rows) > PAGE:
        last = rows[PAGE - 1]
        following = encode_cursor(last["occurred_at"], last["event_id"])
    return HistoryPage([_view(r) for r in rows[:PAGE]], following)


async def visible_interaction(
    conn: asyncpg.Connection, customer_id: uuid.UUID, event_id: uuid.UUID
) -> dict[str, Any] | None:
    """An event of the customer's that the history shows, or None (another customer's, an
    internal one, or none at all: the caller answers 404 alike)."""
    found = await conn.fetchval(_ONE, customer_id, HIDDEN_CHANNELS, HIDDEN_KINDS, UNSENT, event_id)
    if found is None:
        return None
    return found if isinstance(found, dict) else json.loads(found)

"""Read models of the identity graph: a customer's identities and why each is linked."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

_WHY = """
SELECT i.type, i.scope, i.value, i.matching, i.created_at,
       i.undeliverable_since, i.undeliverable_reason,
       l.action, l.rule, l.reason, l.event_id, l.actor, l.at, l.other_customer,
       (SELECT count(*) FROM identity_link_log h
         WHERE (h.type, h.scope, h.value) = (i.type, i.scope, i.value)) AS decisions
FROM identities i
LEFT JOIN LATERAL (
    SELECT * FROM identity_link_log l
    WHERE (l.type, l.scope, l.value) = (i.type, i.scope, i.value)
      AND l.decision = 'accepted' AND l.customer_id = i.customer_id
    ORDER BY l.seq DESC LIMIT 1
) l ON true
WHERE i.customer_id = $1
ORDER BY i.created_at, i.type, i.value
"""

_HISTORY = """
SELECT seq, at, type, scope, value, customer_id, action, decision, rule, reason, event_id,
       other_customer, actor
FROM identity_link_log WHERE customer_id = $1 OR other_customer = $1
ORDER BY seq DESC LIMIT $2
"""


def _text(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def identities(conn: asyncpg.Connection, customer_id: uuid.UUID) -> list[dict[str, Any]]:
    """Each identity of the customer, whether it may match, and the decision that linked it."""
    rows = await conn.fetch(_WHY, customer_id)
    return [
        {
            "type": r["type"],
            "scope": r["scope"],
            "value": r["value"],
            "matching": r["matching"],
            "linked_at": _text(r["created_at"]),
            "why": {
                "action": r["action"],
                "rule": r["rule"],
                "reason": r["reason"],
                "event_id": _text(r["event_id"]),
                "actor": r["actor"],
                "at": _text(r["at"]),
                "from_customer": _text(r["other_customer"]),
            },
            "decisions": r["decisions"],
            "undeliverable": (
                {"since": _text(r["undeliverable_since"]), "reason": r["undeliverable_reason"]}
                if r["undeliverable_since"] is not None
                else None
            ),
        }
        for r in rows
    ]


async def history(
    conn: asyncpg.Connection, customer_id: uuid.UUID, limit: int = 200
) -> list[dict[str, Any]]:
    """The link log entries about the customer, newest first (refusals included)."""
    return [
        {k: _text(v) for k, v in dict(r).items()}
        for r in await conn.fetch(_HISTORY, customer_id, limit)
    ]

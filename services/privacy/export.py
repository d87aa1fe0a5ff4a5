"""Everything the hub holds about one customer, as one JSON-ready document."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from fastapi.encoders import jsonable_encoder

from services.customers import store
from services.identity import views
from services.privacy import log


async def _rows(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(sql, *args)]


async def export(conn: asyncpg.Connection, customer_id: uuid.UUID) -> dict[str, Any] | None:
    """The customer (a merged-away id answers as its survivor), or None when unknown."""
    found = await store.customer(conn, customer_id)
    if found is None:
        return None
    live = uuid.UUID(found["id"])
    ids = [live, *(uuid.UUID(a) for a in found["aliases"])]
    timeline = await _rows(
        conn,
        "SELECT event_id, occurred_at, received_at, projected_at, channel, direction, kind,"
        " subject, body, language, thread_id, provider_message_id, command_id, department,"
        " interaction FROM timeline WHERE customer_id = $1 ORDER BY occurred_at, event_id",
        live,
    )
    events = [row["event_id"] for row in timeline]
    outbound = await _rows(
        conn,
        "SELECT * FROM outbound_messages WHERE customer_id = ANY($1::uuid[]) ORDER BY created_at",
        ids,
    )
    commands = list(
        {row["command_id"] for row in timeline if row["command_id"]}
        | {row["command_id"] for row in outbound}
    )
    document = {
        "exported_for": str(customer_id),
        "customer": found,
        "identities": await views.identities(conn, live),
        "link_log": await _rows(
            conn,
            "SELECT * FROM identity_link_log WHERE customer_id = ANY($2::uuid[])"
            " OR other_customer = ANY($2::uuid[]) OR (type, scope, value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1) ORDER BY seq",
            live,
            ids,
        ),
        "identity_edges": await _rows(
            conn,
            "SELECT * FROM identity_edges WHERE (a_type, a_scope, a_value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1)"
            " OR (b_type, b_scope, b_value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1)",
            live,
        ),
        "identity_separations": await _rows(
            conn,
            "SELECT * FROM identity_separations WHERE (a_type, a_scope, a_value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1)"
            " OR (b_type, b_scope, b_value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1)",
            live,
        ),
        "identity_sightings": await _rows(
            conn,
            "SELECT * FROM identity_sightings WHERE (type, scope, value) IN"
            " (SELECT type, scope, value FROM identities WHERE customer_id = $1)"
            " OR customer_id = ANY($2::uuid[])",
            live,
            ids,
        ),
        "profile": await _rows(
            conn, "SELECT * FROM customer_profiles WHERE customer_id = ANY($1::uuid[])", ids
        ),
        "consents": await _rows(
            conn, "SELECT * FROM consents WHERE customer_id = ANY($1::uuid[])", ids
        ),
        "timeline": timeline,
        "outbound_messages": outbound,
        "delivery_states": await _rows(
            conn,
            "SELECT * FROM delivery_states WHERE command_id = ANY($1::uuid[]) ORDER BY occurred_at",
            commands,
        ),
        "routing_decisions": await _rows(
            conn,
            "SELECT * FROM routing_decisions WHERE event_id = ANY($1::uuid[])"
            " OR customer_id = ANY($2::uuid[]) ORDER BY routed_at",
            events,
            ids,
        ),
        "queue_items": await _rows(
            conn, "SELECT * FROM console_queue_items WHERE event_id = ANY($1::uuid[])", events
        ),
        "privacy_log": await log.entries(conn, live),
    }
    encoded: dict[str, Any] = jsonable_encoder(document)
    return encoded

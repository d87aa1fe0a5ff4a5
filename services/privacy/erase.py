"""Delete a customer: what identifies them and what they said, keeping only a tombstone.

Deleted: timeline rows, delivery states of its messages, routing decisions and queue items of
its events, identities, profile, consents, the conversation logs of its identity values (what
web chat widgets were shown), and the identity graph of its identity values
(sightings, edges, separations, and every link log row about those values, since each names the
value), and the customer's sealing keys, which makes its records on the department topics
unreadable wherever they are kept. Kept: the ``customers`` row with status ``deleted`` and no
name (so the id keeps answering 404 and aliases stay resolvable), link log rows about values
the customer no longer holds (they are another customer's history), ``outbound_messages``
rows (send-once bookkeeping: command id, channel, provider id and state, no address or
content), and the privacy log entry. The blob store's files of the customer's events
(attachments, a message's HTML) are deleted after the rows, once the deletion committed.
"""

from __future__ import annotations

import uuid

import asyncpg

from channels.base import BlobStore
from schemas import CustomerEvent
from services.identity import manual, store
from services.keys import store as sealing_keys
from services.privacy import log
from services.privacy.redact import redact

_BY_KEYS = (  # $1, $2, $3: the customer's identity keys (type, scope, value)
    "DELETE FROM identity_sightings WHERE (type, scope, value) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
    "DELETE FROM identity_edges WHERE (a_type, a_scope, a_value) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
    " OR (b_type, b_scope, b_value) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
    "DELETE FROM identity_separations WHERE (a_type, a_scope, a_value) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))"
    " OR (b_type, b_scope, b_value) IN (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
    "DELETE FROM identity_link_log WHERE (type, scope, value) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
    "DELETE FROM identities WHERE (type, scope, value) IN"
    " (SELECT * FROM unnest($1::text[], $2::text[], $3::text[]))",
)
_BY_VALUES = (  # $1: the customer's identity values (a session channel's conversations)
    "DELETE FROM conversation_log WHERE conversation = ANY($1::text[])",
    "DELETE FROM conversation_heads WHERE conversation = ANY($1::text[])",
)
_BY_EVENTS = (  # $1: the customer's event ids
    "DELETE FROM routing_decisions WHERE event_id = ANY($1::uuid[])",
    "DELETE FROM console_queue_items WHERE event_id = ANY($1::uuid[])",
)
_BY_CUSTOMERS = (
    "DELETE FROM identity_sightings WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM routing_decisions WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM timeline WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM customer_profiles WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM consents WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM self_service_links WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM self_service_sessions WHERE customer_id = ANY($1::uuid[])",
    "DELETE FROM erasure_requests WHERE customer_id = ANY($1::uuid[])",
)


class NotFound(LookupError):
    """No such customer (never existed)."""


async def erase(
    conn: asyncpg.Connection,
    customer_id: uuid.UUID,
    reason: str,
    actor: str,
    blobs: BlobStore | None = None,
) -> CustomerEvent:
    """Delete the customer (or the survivor it was merged into); return the tombstone event.
    The files their messages brought (``blobs``) are deleted once the rows are.

    Deleting a deleted customer deletes nothing and returns its tombstone again, so a caller
    whose publish failed can retry.
    """
    async with conn.transaction():
        status = await conn.fetchval("SELECT status FROM customers WHERE id = $1", customer_id)
        if status is None:
            raise NotFound(str(customer_id))
        live = await manual.live_id(conn, customer_id)
        if live is None:  # already deleted
            aliases = await _aliases(conn, customer_id)
            return _tombstone(customer_id, aliases, "")
        locked = await manual.lock(conn, [live])
        keys = sorted(locked.members[live])
        aliases = await _aliases(conn, live)
        ids = [live, *aliases]
        names = await conn.fetch(
            "SELECT c.display_name, p.name FROM customers c"
            " LEFT JOIN customer_profiles p ON p.customer_id = c.id WHERE c.id = ANY($1::uuid[])",
            ids,
        )
        masked = redact(
            reason,
            [k[2] for k in keys] + [n for r in names for n in (r["display_name"], r["name"]) if n],
        )
        events = await conn.fetch(
            "SELECT event_id, command_id FROM timeline WHERE customer_id = ANY($1::uuid[])", ids
        )
        commands = {r["command_id"] for r in events if r["command_id"]} | {
            r["command_id"]
            for r in await conn.fetch(
                "SELECT command_id FROM outbound_messages WHERE customer_id = ANY($1::uuid[])", ids
            )
        }
        event_ids = [r["event_id"] for r in events]
        await conn.execute(
            "DELETE FROM delivery_states WHERE command_id = ANY($1::uuid[])", list(commands)
        )
        for sql in _BY_EVENTS:
            await conn.execute(sql, event_ids)
        columns = store.columns(keys)
        for sql in _BY_KEYS:
            await conn.execute(sql, *columns)
        for sql in _BY_VALUES:
            await conn.execute(sql, columns[2])
        for sql in _BY_CUSTOMERS:
            await conn.execute(sql, ids)
        await sealing_keys.delete_for(conn, ids)  # what they sealed is unreadable from now on
        await conn.execute(
            "UPDATE customers SET status = 'deleted', display_name = NULL, review = '[]'"
            " WHERE id = ANY($1::uuid[])",
            ids,
        )
        await log.record(conn, live, "delete", masked, actor)
    if blobs is not None:  # files arrive with events and leave with commands
        for owner in [*event_ids, *commands]:
            await blobs.delete_event(owner)
    return _tombstone(live, aliases, masked)


async def _aliases(conn: asyncpg.Connection, customer_id: uuid.UUID) -> list[uuid.UUID]:
    return [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM customers WHERE merged_into = $1 ORDER BY id", customer_id
        )
    ]


def _tombstone(customer_id: uuid.UUID, aliases: list[uuid.UUID], reason: str) -> CustomerEvent:
    return CustomerEvent(
        type="customer.deleted", customer_id=customer_id, merged_ids=aliases, reason=reason
    )

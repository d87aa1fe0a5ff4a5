"""Delivery receipts from providers become delivery states of the hub's outbound commands.

A channel that receives a status callback (Twilio's MessageStatus) knows only the provider's
id of the message. It publishes a ``DeliveryStatus`` whose command id is
``UNRESOLVED_COMMAND`` straight onto the delivery topic (keyed ``channel:provider id``, so one
message's receipts stay in order). The delivery agent resolves such receipts here: the
command is found through ``outbound_messages`` ``(channel, provider_message_id)``, recorded by
the dispatcher when it sent the message, and the state is recorded in ``delivery_states``
like the dispatcher's own states, where the highest-ranked state is the one shown, so late or
out-of-order receipts never move a message backwards. Receipts are not timeline rows: the
timeline shows the outbound message once, with its current state.

A receipt can arrive before the dispatcher recorded the provider's id (the provider calls back
while the send's bookkeeping is still under way). It is parked in ``pending_delivery_states``;
the dispatcher's own delivery status of that message, which is published only after the id is
recorded, claims it in the delivery agent. The park is committed before the second lookup
(no transaction around them): either that lookup sees the dispatcher's record, or the
dispatcher's status comes after the park is visible and claims it.

Older versions published receipts as interactions of kind ``status`` with ``delivery`` set, on
the interactions topic; unify still sets those apart (``split_receipts``) and forwards their
``delivery`` to the delivery topic, where they are resolved here like the others.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

import asyncpg

from schemas import Channel, DeliveryState, DeliveryStatus, Interaction
from schemas.events import UNRESOLVED_COMMAND
from services.bus.producer import event_record
from services.bus.records import Record
from services.processors.timeline import write_states

log = logging.getLogger(__name__)

Key = tuple[str, str]

_LOOKUP = """
SELECT channel, provider_message_id, command_id FROM outbound_messages
WHERE (channel, provider_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""
_PARK = """
INSERT INTO pending_delivery_states (channel, provider_message_id, state, rank, occurred_at,
                                     error_code, error_message)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int2[], $5::timestamptz[],
                     $6::text[], $7::text[])
ON CONFLICT DO NOTHING
"""
_CLAIM = """
DELETE FROM pending_delivery_states
WHERE (channel, provider_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
RETURNING channel, provider_message_id, state, occurred_at, error_code, error_message
"""
_PRUNE = "DELETE FROM pending_delivery_states WHERE parked_at < now() - interval '1 day'"


def split_receipts(
    interactions: Sequence[Interaction],
) -> tuple[list[Interaction], list[Interaction]]:
    """Return (interactions for the timeline, delivery receipts): the receipts as older
    versions published them, interactions with ``delivery`` set."""
    rest = [i for i in interactions if i.delivery is None]
    receipts = [i for i in interactions if i.delivery is not None]
    return rest, receipts


def forwarded(receipts: Sequence[Interaction]) -> list[Record]:
    """The delivery-topic records of receipts that arrived as interactions (older versions),
    their ``delivery`` as a channel publishes it now (resolved in the delivery agent)."""
    return [event_record(r.delivery) for r in receipts if r.delivery is not None]


def _key(status: DeliveryStatus) -> Key:
    return (status.channel.value, status.provider_message_id or "")


async def _lookup(conn: asyncpg.Connection, keys: Iterable[Key]) -> dict[Key, uuid.UUID]:
    keys = list(dict.fromkeys(keys))
    if not keys:
        return {}
    rows = await conn.fetch(_LOOKUP, [k[0] for k in keys], [k[1] for k in keys])
    return {(r["channel"], r["provider_message_id"]): r["command_id"] for r in rows}


async def _claim(conn: asyncpg.Connection, commands: dict[Key, uuid.UUID]) -> list[DeliveryStatus]:
    """Take the parked states of these messages, now attributed to their commands."""
    if not commands:
        return []
    rows = await conn.fetch(_CLAIM, [k[0] for k in commands], [k[1] for k in commands])
    return [
        DeliveryStatus(
            command_id=commands[(r["channel"], r["provider_message_id"])],
            channel=Channel(r["channel"]),
            state=DeliveryState(r["state"]),
            occurred_at=r["occurred_at"],
            provider_message_id=r["provider_message_id"],
            error_code=r["error_code"],
            error_message=r["error_message"],
        )
        for r in rows
    ]


async def resolve_receipts(
    conn: asyncpg.Connection, statuses: Sequence[DeliveryStatus]
) -> list[DeliveryStatus]:
    """``statuses`` attributed to their commands: those already attributed as they are, the
    receipts (``UNRESOLVED_COMMAND``) of messages the dispatcher recorded with their
    command's id; park the others (and drop those without a provider message id). Runs its
    statements outside a transaction (see the module)."""
    known = [s for s in statuses if s.command_id != UNRESOLVED_COMMAND]
    unknown = [s for s in statuses if s.command_id == UNRESOLVED_COMMAND]
    orphans = [s for s in unknown if not s.provider_message_id]
    for status in orphans:
        log.warning("delivery receipt without a provider message id on %s", status.channel)
    unknown = [s for s in unknown if s.provider_message_id]
    commands = await _lookup(conn, map(_key, unknown))
    resolved = [
        s.model_copy(update={"command_id": commands[_key(s)]})
        for s in unknown
        if _key(s) in commands
    ]
    waiting = [s for s in unknown if _key(s) not in commands]
    if waiting:
        await conn.execute(
            _PARK,
            *(
                list(column)
                for column in zip(
                    *(
                        (
                            s.channel.value,
                            s.provider_message_id,
                            s.state.value,
                            s.state.rank,
                            s.occurred_at,
                            s.error_code,
                            s.error_message,
                        )
                        for s in waiting
                    ),
                    strict=True,
                )
            ),
        )
        await conn.execute(_PRUNE)
        # Recorded between the lookup and the park? Then the dispatcher's status may have been
        # handled already, before the park: claim them here.
        resolved += await _claim(conn, await _lookup(conn, map(_key, waiting)))
        log.info("parked %d delivery receipts of messages not recorded yet", len(waiting))
    return known + resolved


async def claim_parked(conn: asyncpg.Connection, statuses: Sequence[DeliveryStatus]) -> int:
    """Record the parked receipts of messages whose provider id these statuses reveal."""
    commands = {
        _key(s): s.command_id
        for s in statuses
        if s.provider_message_id and s.command_id != UNRESOLVED_COMMAND
    }
    if not commands:
        return 0
    async with conn.transaction():  # taken and recorded together, or left parked
        claimed = await _claim(conn, commands)
        return await write_states(conn, claimed) if claimed else 0

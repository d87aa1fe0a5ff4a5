"""Replies a customer did not see on a session channel (a web chat closed before the agent
answered) go out by another channel: to the address the customer left in the chat, by the
channel that delivers to it (email for an address, SMS for a number), respecting consent,
since they are ordinary outbound commands the dispatcher then sends.

The dispatcher records every reply it relays on a session channel, due after
OMNIHUB_UNSEEN_REPLY_SECONDS; a timer takes the due ones (``FOR UPDATE SKIP LOCKED``: several
dispatchers share the work), drops those the customer read (delivery state ``read``) or
whose customer left no address, and sends the rest, one message per customer and channel.
The message answers the first reply it carries (``in_reply_to``: agents see it in the chat's
conversation) and carries a conversation token, so the customer's answer by email comes back
into that conversation.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import asyncpg

from channels import registry
from channels.base import ChannelAdapter, PublishError, SessionAdapter
from schemas import Channel, DeliveryState, Identity, IdentityType, OutboundCommand, ThreadRef
from services.bus.producer import Producer
from services.customers import outbound

log = logging.getLogger(__name__)

#: What a customer leaves in a chat for replies (attributes of an inbound interaction).
CONTACT_TYPE = "contact_type"
CONTACT_VALUE = "contact_value"
SOURCE = "services/dispatcher"

_RECORD = """
INSERT INTO unseen_replies (command_id, customer_id, channel, due_at)
SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[],
                     array_fill(now() + make_interval(secs => $4), ARRAY[cardinality($1)]))
ON CONFLICT (command_id) DO NOTHING
"""

_DUE = """
DELETE FROM unseen_replies WHERE command_id IN (
    SELECT command_id FROM unseen_replies WHERE due_at <= now()
    ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING command_id, customer_id, channel
"""

#: The replies of the due commands nobody read, with their text and event, oldest first.
_UNREAD = """
SELECT t.command_id, t.customer_id, t.channel, t.event_id, t.body
FROM timeline t
WHERE t.command_id = ANY($1::uuid[]) AND t.direction = 'outbound'
  AND NOT EXISTS (
      SELECT 1 FROM delivery_states s WHERE s.command_id = t.command_id AND s.state = $2
  )
ORDER BY t.occurred_at
"""

#: The address each customer last left on a channel.
_CONTACTS = """
SELECT DISTINCT ON (customer_id, channel) customer_id, channel,
       interaction->'attributes'->>'contact_type' AS type,
       interaction->'attributes'->>'contact_value' AS value
FROM timeline
WHERE customer_id = ANY($1::uuid[]) AND direction = 'inbound'
  AND interaction->'attributes' ? 'contact_value'
ORDER BY customer_id, channel, occurred_at DESC
"""


def session_channels(adapters: Mapping[str, ChannelAdapter]) -> set[Channel]:
    """The channels whose replies reach a customer only while they are connected."""
    return {c for a in adapters.values() if isinstance(a, SessionAdapter) for c in a.channels}


async def record(
    pool: asyncpg.Pool,
    relayed: Iterable[tuple[uuid.UUID, uuid.UUID | None, Channel]],
    after_seconds: float,
) -> None:
    """Note relayed replies (command, customer, channel), checked once ``after_seconds``
    passed."""
    rows = [(c, who, channel.value) for c, who, channel in relayed if who is not None]
    if rows:
        async with pool.acquire() as conn:
            await _note(conn, rows, after_seconds)


async def _note(
    conn: asyncpg.Connection, rows: list[tuple[uuid.UUID, uuid.UUID, str]], seconds: float
) -> None:
    await conn.execute(_RECORD, *(list(col) for col in zip(*rows, strict=True)), seconds)


def channel_for(kind: IdentityType, served: set[Channel]) -> Channel | None:
    """The channel served here that delivers to ``kind`` first (email, then SMS ...)."""
    for channel in Channel:
        info = registry.channel_info(channel)
        if channel in served and info and info.recipients and kind in info.recipients:
            return channel
    return None


def conversation_token(seed: str) -> str:
    """A conversation token (26 base32 characters) from ``seed``: what email threads by."""
    digest = hashlib.sha256(seed.encode()).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")[:26]


@dataclass(frozen=True)
class Unseen:
    """One customer's unread replies on one channel, and where they go instead."""

    customer_id: uuid.UUID
    channel: str
    texts: list[str]
    first_event: uuid.UUID
    to: Identity
    commands: list[uuid.UUID]


def message(unseen: Unseen) -> str:
    """The text sent in place of the chat."""
    replies = "\n\n".join(unseen.texts)
    label = registry.label(unseen.channel)
    return (
        f"{replies}\n\n---\nYou left this address in our {label.lower()}, and these replies"
        " reached it after you had gone. Answer this message to continue the conversation."
    )


#: Taken replies whose timeline row is not written yet (the processors behind): noted again,
#: unless their customer is gone.
_NOT_YET = """
SELECT u.command_id, u.customer_id, u.channel
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS u(command_id, customer_id, channel)
JOIN customers c ON c.id = u.customer_id AND c.status <> 'deleted'
WHERE NOT EXISTS (SELECT 1 FROM timeline t WHERE t.command_id = u.command_id)
"""


async def due(conn: asyncpg.Connection, limit: int = 200, later: float = 60.0) -> list[Unseen]:
    """Take the due replies; the unread ones of customers who left an address, grouped.
    A reply not on the timeline yet is put back for ``later`` seconds, not dropped."""
    taken = await conn.fetch(_DUE, limit)
    if taken:
        waiting = await conn.fetch(
            _NOT_YET,
            [r["command_id"] for r in taken],
            [r["customer_id"] for r in taken],
            [r["channel"] for r in taken],
        )
        if waiting:
            await _note(conn, [tuple(r) for r in waiting], later)
    if not taken:
        return []
    unread = await conn.fetch(_UNREAD, [r["command_id"] for r in taken], DeliveryState.READ.value)
    contacts = {
        (r["customer_id"], r["channel"]): (r["type"], r["value"])
        for r in await conn.fetch(_CONTACTS, list({r["customer_id"] for r in unread}))
    }
    grouped: dict[tuple[uuid.UUID, str], Unseen] = {}
    for row in unread:
        key = (row["customer_id"], row["channel"])
        found = contacts.get(key)
        if found is None or not row["body"]:
            continue
        try:
            to = Identity(type=IdentityType(found[0]), value=found[1])
        except ValueError:
            continue
        if key in grouped:
            grouped[key].texts.append(row["body"])
            grouped[key].commands.append(row["command_id"])
        else:
            grouped[key] = Unseen(
                key[0], key[1], [row["body"]], row["event_id"], to, [row["command_id"]]
            )
    return list(grouped.values())


async def send_due(
    pool: asyncpg.Pool, producer: Producer, served: set[Channel], retry_seconds: float
) -> list[OutboundCommand]:
    """Send what is due and unseen; a failure puts the customer's replies back for later."""
    async with pool.acquire() as conn, conn.transaction():
        found = await due(conn, later=retry_seconds)
    sent = []
    for unseen in found:
        channel = channel_for(unseen.to.type, served)
        if channel is None:
            log.warning("no channel served here delivers to %s", unseen.to.type.value)
            continue
        try:
            sent.append(
                await outbound.queue_message(
                    pool,
                    producer,
                    unseen.customer_id,
                    channel=channel,
                    to=unseen.to,
                    text=message(unseen),
                    subject=f"Your {registry.label(unseen.channel).lower()} with us",
                    in_reply_to=unseen.first_event,
                    thread=ThreadRef(id=conversation_token(f"unseen:{unseen.first_event}")),
                    requested_by="unseen reply",
                    source=SOURCE,
                )
            )
        except outbound.NoSuchCustomer:  # erased meanwhile
            continue
        except PublishError:
            log.warning("unseen replies could not be sent on; trying again later", exc_info=True)
            rows = [(c, unseen.customer_id, unseen.channel) for c in unseen.commands]
            async with pool.acquire() as conn:
                await _note(conn, rows, retry_seconds)
    return sent

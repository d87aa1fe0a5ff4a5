"""Queue a message to a customer: an OutboundCommand on the outbound topic, acked by the broker.

Shared by ``POST /v1/customers/{id}/messages`` and the console's reply form; the dispatcher
sends the command and reports its delivery state.
"""

from __future__ import annotations

import uuid

import asyncpg

from schemas import Channel, Identity, OutboundCommand
from schemas.topics import OUTBOUND
from services.bus.producer import Producer
from services.bus.records import to_record
from services.customers import store


class NoSuchCustomer(LookupError):
    """The customer is unknown (or deleted)."""


class NoRecipient(ValueError):
    """No identity to send to was given and the customer has none."""


async def queue_message(
    pool: asyncpg.Pool,
    producer: Producer,
    customer_id: uuid.UUID,
    *,
    channel: Channel,
    text: str,
    requested_by: str,
    subject: str | None = None,
    to: Identity | None = None,
    in_reply_to: uuid.UUID | None = None,
    source: str = "services/api",
) -> OutboundCommand:
    """Publish the command once the broker acknowledged it (PublishError when not).

    ``to`` defaults to the customer's first identity.
    """
    async with pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
    if found is None:
        raise NoSuchCustomer(str(customer_id))
    if to is None:
        if not found["identities"]:
            raise NoRecipient("customer has no identity")
        first = found["identities"][0]
        to = Identity(type=first["type"], scope=first["scope"], value=first["value"])
    command = OutboundCommand(
        customer_id=customer_id,
        channel=channel,
        to=to,
        text=text,
        subject=subject,
        in_reply_to=in_reply_to,
        requested_by=requested_by,
    )
    await producer.send_all([to_record(OUTBOUND, command, str(command.command_id), source)])
    return command

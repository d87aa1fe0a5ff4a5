"""Queue a message to a customer: an OutboundCommand on the outbound topic, acked by the broker.

Shared by ``POST /v1/customers/{id}/messages`` and the console's reply form; the dispatcher
sends the command and reports its delivery state.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from channels import registry
from schemas import Channel, Identity, IdentityType, OutboundCommand
from schemas.topics import OUTBOUND
from services.bus.producer import Producer
from services.bus.records import to_record
from services.customers import store
from services.keys.seal import CustomerErased, sealed_for


def default_recipient(channel: Channel, identities: Sequence[dict[str, Any]]) -> Identity | None:
    """The customer's first identity of a type ``channel`` delivers to (any, for api)."""
    info = registry.channel_info(channel)
    wanted = info.recipients if info else ()
    if wanted is None:
        chosen = identities[0] if identities else None
    else:
        chosen = next((i for kind in wanted for i in identities if i["type"] == kind.value), None)
    if chosen is None:
        return None
    return Identity.model_construct(
        type=IdentityType(chosen["type"]), scope=chosen.get("scope") or "", value=chosen["value"]
    )


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

    ``to`` defaults to the customer's first identity the channel can deliver to.
    """
    async with pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
    if found is None:
        raise NoSuchCustomer(str(customer_id))
    if to is None:
        to = default_recipient(channel, found["identities"])
        if to is None:
            raise NoRecipient(f"the customer has no identity {channel.value} can deliver to")
    command = OutboundCommand(
        customer_id=customer_id,
        channel=channel,
        to=to,
        text=text,
        subject=subject,
        in_reply_to=in_reply_to,
        requested_by=requested_by,
    )
    record = to_record(OUTBOUND, command, str(command.command_id), source)
    try:  # sealed with the customer's key: erasing the customer shreds the command too
        records = await sealed_for(pool, customer_id, [record])
    except CustomerErased as exc:  # erased since it was looked up
        raise NoSuchCustomer(str(customer_id)) from exc
    await producer.send_all(records)
    return command

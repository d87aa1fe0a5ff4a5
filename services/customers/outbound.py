"""Queue a message to a customer: an OutboundCommand on the outbound topic, acked by the broker.

Shared by ``POST /v1/customers/{id}/messages`` and the console's reply form; the dispatcher
sends the command and reports its delivery state.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from channels import registry
from channels.base import BlobStore, blob_id
from schemas import Attachment, Channel, Identity, IdentityType, OutboundCommand, ThreadRef
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


#: What an inbound interaction's attributes say that a reply on its channel needs: the chain
#: of message ids it answers, the others it was sent to (a reply keeps them), the address of
#: ours it reached (the reply comes from there), the address the sender asked replies to go
#: to. Channels set them; none names a channel.
REPLY_ATTRIBUTES = {
    "references": "references",
    "participants": "cc",
    "inboxes": "inbox",
    "reply_to": "reply_to",
}
_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)


@dataclass(frozen=True)
class ReplyContext:
    """How a reply joins the conversation of the message it answers."""

    thread: ThreadRef | None
    subject: str | None
    attributes: dict[str, str]


async def reply_context(
    conn: asyncpg.Connection, customer_id: uuid.UUID, event_id: uuid.UUID, channel: Channel
) -> ReplyContext | None:
    """The conversation, subject and reply attributes of the customer's message ``event_id``
    when the reply goes out on its channel; None otherwise."""
    row = await conn.fetchrow(
        "SELECT channel, thread_id, provider_message_id, subject,"
        " interaction->'attributes' AS attributes"
        " FROM timeline WHERE event_id = $1 AND customer_id = $2",
        event_id,
        customer_id,
    )
    if row is None or row["channel"] != channel.value:
        return None
    found = row["attributes"] or {}
    if isinstance(found, str):
        found = json.loads(found)
    attributes = {
        target: str(found[source]).split(",")[0].strip()
        if target == "inbox"
        else str(found[source])
        for source, target in REPLY_ATTRIBUTES.items()
        if found.get(source)
    }
    thread = None
    if row["thread_id"]:
        thread = ThreadRef(id=row["thread_id"], reply_to=row["provider_message_id"])
    subject = row["subject"]
    if subject and not _REPLY_PREFIX.match(subject):
        subject = f"Re: {subject}"
    return ReplyContext(thread, subject[:998] if subject else None, attributes)


_LAST_INBOUND = """
SELECT max(occurred_at) FROM timeline
WHERE customer_id = $1 AND channel = $2 AND direction = 'inbound'
"""


async def last_inbound(
    conn: asyncpg.Connection, customer_id: uuid.UUID, channel: Channel
) -> datetime | None:
    """When the customer last wrote on ``channel`` (what its reply window counts from)."""
    found: datetime | None = await conn.fetchval(_LAST_INBOUND, customer_id, channel.value)
    return found


async def window_attributes(
    conn: asyncpg.Connection, customer_id: uuid.UUID, channel: Channel
) -> dict[str, str]:
    """``last_inbound_at``, when the customer last wrote on ``channel``, for a channel whose
    replies are allowed only for a while after that (``ChannelInfo.reply_window``)."""
    info = registry.channel_info(channel)
    if info is None or not info.reply_window:
        return {}
    last = await last_inbound(conn, customer_id, channel)
    return {"last_inbound_at": last.isoformat()} if last is not None else {}


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
    files: Sequence[tuple[str, str, bytes]] = (),
    blobs: BlobStore | None = None,
    timeline_text: str | None = None,
    thread: ThreadRef | None = None,
    attributes: Mapping[str, str] | None = None,
) -> OutboundCommand:
    """Publish the command once the broker acknowledged it (PublishError when not).

    ``to`` defaults to the customer's first identity the channel can deliver to; ``files``
    (name, type, bytes) are stored in ``blobs`` under the command before it is published;
    ``timeline_text`` is what the timeline keeps instead of ``text`` (a secret sent once);
    ``thread`` is the conversation when the message answers none on its channel;
    ``attributes`` are what the channel reads besides (a template's name and parameters).
    """
    answered = None
    async with pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
        if found is not None and in_reply_to is not None:  # on the live customer's timeline
            answered = await reply_context(conn, uuid.UUID(found["id"]), in_reply_to, channel)
        window = await window_attributes(conn, uuid.UUID(found["id"]), channel) if found else {}
    if found is None:
        raise NoSuchCustomer(str(customer_id))
    if to is None:
        to = default_recipient(channel, found["identities"])
        if to is None:
            raise NoRecipient(f"the customer has no identity {channel.value} can deliver to")
    command_id = uuid.uuid4()
    stored = {blob_id(command_id, n): file for n, file in enumerate(files, start=1)}
    if stored:  # in the blob store before the command can be sent
        if blobs is None:
            raise ValueError("files need the blob store")
        await asyncio.gather(*(blobs.put(blob, data) for blob, (_, _, data) in stored.items()))
    attachments = [
        Attachment(name=name[:255], content_type=kind[:255], size=len(data), blob=blob)
        for blob, (name, kind, data) in stored.items()
    ]
    command = OutboundCommand(
        command_id=command_id,
        attachments=attachments,
        customer_id=customer_id,
        channel=channel,
        to=to,
        text=text,
        timeline_text=timeline_text,
        subject=subject or (answered.subject if answered else None),
        in_reply_to=in_reply_to,
        thread=answered.thread if answered else thread,
        requested_by=requested_by,
        attributes={
            **(answered.attributes if answered else {}),
            **(attributes or {}),
            **window,
        },
    )
    record = to_record(OUTBOUND, command, str(command.command_id), source)
    try:  # sealed with the customer's key: erasing the customer shreds the command too
        records = await sealed_for(pool, customer_id, [record])
    except CustomerErased as exc:  # erased since it was looked up
        raise NoSuchCustomer(str(customer_id)) from exc
    await producer.send_all(records)
    return command

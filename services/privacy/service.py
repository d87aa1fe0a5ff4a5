"""Privacy actions as the API and the console run them: logged, and published downstream."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import asyncpg

from channels.base import BlobStore
from schemas import CustomerEvent
from schemas.topics import CUSTOMERS, ROUTED
from services.bus.producer import Producer
from services.bus.records import to_record
from services.privacy import log
from services.privacy.erase import erase
from services.privacy.export import export

SOURCE = "services/privacy"


async def export_customer(
    pool: asyncpg.Pool, customer_id: uuid.UUID, actor: str
) -> dict[str, Any] | None:
    """The export document (None: unknown customer); the export itself is logged."""
    async with pool.acquire() as conn:
        document = await export(conn, customer_id)
        if document is not None:
            await log.record(conn, uuid.UUID(document["customer"]["id"]), "export", "", actor)
    return document


async def delete_customer(
    pool: asyncpg.Pool,
    producer: Producer,
    customer_id: uuid.UUID,
    reason: str,
    actor: str,
    blobs: BlobStore | None = None,
) -> CustomerEvent:
    """Delete, then publish the ``customer.deleted`` tombstone on the customers topic and on
    every department's topic (acked): a department holds copies of the customer's interactions
    and must delete them (docs/topics.md), whether or not it had any.

    Raises erase.NotFound, ManualError (the customer changed meanwhile) or PublishError (the
    deletion is committed; calling again re-publishes the tombstone).
    """
    async with pool.acquire() as conn:
        event = await erase(conn, customer_id, reason, actor, blobs)
    record = to_record(CUSTOMERS, event, str(event.event_id), SOURCE)
    await producer.send_all(
        [record, *(dataclasses.replace(record, topic=spec.name) for spec in ROUTED.values())]
    )
    return event

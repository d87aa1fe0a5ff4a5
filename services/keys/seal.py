"""Seal records with their customer's key (schemas/sealing.py's ``customer`` scheme)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from schemas.sealing import Seal, seal, without_content_type
from services.bus.records import Record
from services.keys.store import CustomerKey, CustomerKeys

#: The keys a process's API handlers and console seal with (its workers hold their own).
SHARED = CustomerKeys()


class CustomerErased(LookupError):
    """The customer has no key: it was erased, so nothing more is published about it."""


def sealed(records: Sequence[Record], key: CustomerKey) -> list[Record]:
    """``records`` sealed with ``key``: value sealed, headers naming the seal."""
    seal_headers = Seal("customer", key.key_id).headers()
    return [
        Record(
            topic=r.topic,
            key=r.key,
            value=seal(key.key, key.key_id, r.value),
            headers=without_content_type(r.headers) + seal_headers,
        )
        for r in records
    ]


async def sealed_for(
    db: asyncpg.Pool | asyncpg.Connection,
    customer_id: uuid.UUID,
    records: Sequence[Record],
    keys: CustomerKeys = SHARED,
) -> list[Record]:
    """``records`` about one customer sealed with its key; CustomerErased when it has none."""
    key = (await keys.for_customers(db, [customer_id])).get(customer_id)
    if key is None:
        raise CustomerErased(str(customer_id))
    return sealed(records, key)

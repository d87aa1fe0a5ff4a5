"""Seal records with their customer's key (schemas/sealing.py's ``customer`` scheme)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from schemas import CustomerEvent
from schemas.sealing import Seal, seal, without_content_type
from schemas.topics import CUSTOMERS
from services.bus.records import Record, to_record
from services.keys.store import CustomerKey, CustomerKeys, Db

log = logging.getLogger(__name__)

#: The keys a process's API handlers and console seal with (its workers hold their own).
SHARED = CustomerKeys()


class CustomerErased(LookupError):
    """The customer has no key: it was erased, so nothing more is published about it."""


def sealed(records: Sequence[Record], key: CustomerKey) -> list[Record]:
    """``records`` sealed with a customer's ``key``."""
    return sealed_with(records, key.key, Seal("customer", key.key_id))


def sealed_with(records: Sequence[Record], key: bytes, named: Seal) -> list[Record]:
    """``records`` sealed under ``key`` (either scheme's data key): value sealed, headers
    naming the seal."""
    seal_headers = named.headers()
    return [
        Record(
            topic=r.topic,
            key=r.key,
            value=seal(key, named.key_id, r.value),
            headers=without_content_type(r.headers) + seal_headers,
        )
        for r in records
    ]


async def sealed_for(
    db: Db,
    customer_id: uuid.UUID,
    records: Sequence[Record],
    keys: CustomerKeys = SHARED,
) -> list[Record]:
    """``records`` about one customer sealed with its key; CustomerErased when it has none."""
    key = (await keys.for_customers(db, [customer_id])).get(customer_id)
    if key is None:
        raise CustomerErased(str(customer_id))
    return sealed(records, key)


async def customer_event_records(
    db: Db,
    events: Sequence[CustomerEvent],
    source: str,
    keys: CustomerKeys = SHARED,
) -> list[Record]:
    """The customers topic's records of ``events``: each sealed with its customer's key (a
    merge's reason, a split's identities), except ``customer.deleted``, which stays plain so
    that consumers can read it once the key is gone. An event about a customer erased
    meanwhile is left out (logged): whatever it changed was deleted with the customer."""
    found = await keys.for_customers(
        db, (e.customer_id for e in events if e.type != "customer.deleted")
    )
    records: list[Record] = []
    for event in events:
        record = to_record(CUSTOMERS, event, str(event.event_id), source)
        if event.type == "customer.deleted":
            records.append(record)
        elif (key := found.get(event.customer_id)) is not None:
            records += sealed([record], key)
        else:
            log.info("%s of erased customer %s not published", event.type, event.customer_id)
    return records

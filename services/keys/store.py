"""Customer keys: made on first need, cached a short while, deleted with the customer.

A cached key may outlive its erasure by ``CACHE_SECONDS`` in a process that held it; nothing
of an erased customer is published meanwhile (the processors drop a deleted customer's events)
and what was sealed with the key stays unreadable once the row is gone (docs/design-notes.md).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

import asyncpg

from schemas.sealing import new_key

#: Where keys are read and made: a pool, or a connection the caller holds.
Db: TypeAlias = asyncpg.Pool | asyncpg.Connection

#: How long a process trusts a key it fetched.
CACHE_SECONDS = 60.0
CACHE_LIMIT = 100_000

#: Existing keys, and new ones for customers that have none (never for a deleted customer).
#: The final SELECT's snapshot does not see the rows this statement inserts: they come back
#: through RETURNING, the others through the SELECT.
_GET_OR_CREATE = """
WITH wanted AS (
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bytea[]) AS w(customer_id, key_id, key)
), made AS (
    INSERT INTO customer_keys (customer_id, key_id, key)
    SELECT w.customer_id, w.key_id, w.key FROM wanted w
    WHERE NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = w.customer_id AND c.status = 'deleted')
    ON CONFLICT (customer_id) DO NOTHING
    RETURNING customer_id, key_id, key
)
SELECT customer_id, key_id, key FROM made
UNION ALL
SELECT k.customer_id, k.key_id, k.key FROM customer_keys k JOIN wanted w USING (customer_id)
"""


@dataclass(frozen=True, slots=True)
class CustomerKey:
    """A customer's key and the id records name it by."""

    key_id: str
    key: bytes


class CustomerKeys:
    """A process's view of the customer keys: batched get-or-create, cached ``CACHE_SECONDS``."""

    def __init__(self) -> None:
        self._cache: dict[uuid.UUID, tuple[float, CustomerKey]] = {}

    async def for_customers(
        self, conn: Db, customer_ids: Iterable[uuid.UUID]
    ) -> dict[uuid.UUID, CustomerKey]:
        """The keys of ``customer_ids``, made for those that have none; a deleted customer
        has none (and gets none)."""
        now = time.monotonic()
        found: dict[uuid.UUID, CustomerKey] = {}
        missing: list[uuid.UUID] = []
        for customer in set(customer_ids):
            cached = self._cache.get(customer)
            if cached is not None and cached[0] > now:
                found[customer] = cached[1]
            else:
                missing.append(customer)
        if missing:
            fetched = await _get_or_create(conn, missing)
            lost = [c for c in missing if c not in fetched]
            if lost:  # made meanwhile by another process: visible to a new statement
                fetched.update(await _get_or_create(conn, lost))
            if len(self._cache) > CACHE_LIMIT:
                self._cache.clear()
            for customer, key in fetched.items():
                self._cache[customer] = (now + CACHE_SECONDS, key)
            found.update(fetched)
        return found


async def _get_or_create(conn: Db, customer_ids: list[uuid.UUID]) -> dict[uuid.UUID, CustomerKey]:
    rows = await conn.fetch(
        _GET_OR_CREATE,
        customer_ids,
        [uuid.uuid4() for _ in customer_ids],
        [new_key() for _ in customer_ids],
    )
    return {r["customer_id"]: CustomerKey(str(r["key_id"]), bytes(r["key"])) for r in rows}


async def key_by_id(conn: Db, key_id: uuid.UUID) -> CustomerKey | None:
    """The key records name ``key_id`` (None: never made, or its customer was erased)."""
    row = await conn.fetchrow("SELECT key_id, key FROM customer_keys WHERE key_id = $1", key_id)
    return CustomerKey(str(row["key_id"]), bytes(row["key"])) if row else None


async def delete_for(conn: asyncpg.Connection, customer_ids: list[uuid.UUID]) -> int:
    """Delete the keys of ``customer_ids`` (erasure); returns how many there were."""
    result = await conn.execute(
        "DELETE FROM customer_keys WHERE customer_id = ANY($1::uuid[])", customer_ids
    )
    return int(result.split()[-1])

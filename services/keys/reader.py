"""Open sealed records inside the hub (the benchmark's watchers, tests): keys by id from
PostgreSQL, fetched once a batch for the ids not cached. Departments use GET /v1/keys/{id}."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from schemas.cloudevents import header_map
from schemas.sealing import Seal, SealError, open_sealed


class SealedReader:
    """Plaintext values of consumed records, plain or sealed with a customer key."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._keys: dict[str, bytes] = {}

    async def values(self, records: Sequence[Any]) -> list[bytes | None]:
        """Each record's value as published before sealing; None where its key is gone (the
        customer was erased). SealError for a value that does not open with its key."""
        seals = [Seal.of(header_map(r.headers)) for r in records]
        await self._fetch(s.key_id for s in seals if s is not None)
        out: list[bytes | None] = []
        for record, found in zip(records, seals, strict=True):
            if found is None:
                out.append(record.value)
            elif found.scheme != "customer":
                raise SealError(f"{found.scheme}-sealed records are not opened here")
            else:
                key = self._keys.get(found.key_id)
                out.append(None if key is None else open_sealed(key, found.key_id, record.value))
        return out

    async def _fetch(self, key_ids: Iterable[str]) -> None:
        missing = {k for k in key_ids if k not in self._keys}
        if not missing:
            return
        rows = await self.pool.fetch(
            "SELECT key_id, key FROM customer_keys WHERE key_id = ANY($1::uuid[])",
            [uuid.UUID(k) for k in missing],
        )
        self._keys.update({str(r["key_id"]): bytes(r["key"]) for r in rows})

"""Open sealed records inside the hub (the benchmark's watchers, tests): keys by id from
PostgreSQL, fetched once a batch for the ids not cached. Departments use GET /v1/keys/{id}."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from schemas.cloudevents import header_map
from schemas.sealing import Seal, SealError, open_sealed


@dataclass(frozen=True, slots=True)
class Unopened:
    """Why a sealed record's value cannot be had; ``erased``: its key was deleted."""

    reason: str
    erased: bool


class SealedReader:
    """Plaintext values of consumed records, plain or sealed with a customer key."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._keys: dict[str, bytes] = {}

    async def values(self, records: Sequence[Any]) -> list[bytes | None]:
        """Each record's value as published before sealing; None where its key is gone (the
        customer was erased). SealError for a value that does not open with its key."""
        out: list[bytes | None] = []
        for opened in await self.open_each(records):
            if isinstance(opened, Unopened):
                if not opened.erased:
                    raise SealError(opened.reason)
                out.append(None)
            else:
                out.append(opened)
        return out

    async def open_each(self, records: Sequence[Any]) -> list[bytes | Unopened]:
        """Each record's plaintext value, or why it cannot be had (never raises for one
        record: a consumer dead-letters that one and goes on)."""
        seals: list[Seal | Unopened | None] = []
        for record in records:
            try:
                seals.append(Seal.of(header_map(_items(record.headers))))
            except SealError as exc:
                seals.append(Unopened(str(exc), erased=False))
        await self._fetch(s.key_id for s in seals if isinstance(s, Seal))
        out: list[bytes | Unopened] = []
        for record, found in zip(records, seals, strict=True):
            if found is None:
                out.append(record.value or b"")
            elif isinstance(found, Unopened):
                out.append(found)
            elif found.scheme != "customer":
                out.append(Unopened(f"{found.scheme}-sealed records are not opened here", False))
            elif (key := self._keys.get(found.key_id)) is None:
                out.append(
                    Unopened(
                        f"sealed with key {found.key_id}, which no longer exists"
                        " (its customer was erased)",
                        erased=True,
                    )
                )
            else:
                try:
                    out.append(open_sealed(key, found.key_id, record.value or b""))
                except SealError as exc:
                    out.append(Unopened(str(exc), erased=False))
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


def _items(headers: Any) -> Any:
    """A record's headers as (name, value) pairs (faust hands some over as a dict)."""
    return headers.items() if isinstance(headers, dict) else headers

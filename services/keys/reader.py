"""Open sealed records inside the hub (the dispatcher, the benchmark's watchers, tests): keys
by id from PostgreSQL, fetched once a batch for the ids not cached, trusted ``CACHE_SECONDS``
like the keys that seal them. Departments use GET /v1/keys/{id}."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from schemas.cloudevents import header_map
from schemas.sealing import Seal, SealError, open_sealed
from services.keys.store import CACHE_LIMIT, CACHE_SECONDS, Db


@dataclass(frozen=True, slots=True)
class Unopened:
    """Why a sealed record's value cannot be had; ``erased``: its key was deleted."""

    reason: str
    erased: bool


class SealedReader:
    """Plaintext values of consumed records, plain or sealed with a customer key."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, bytes]] = {}  # key id -> (trusted until, key)

    async def values(self, db: Db, records: Sequence[Any]) -> list[bytes | None]:
        """Each record's value as published before sealing; None where its key is gone (the
        customer was erased). SealError for a value that does not open with its key."""
        out: list[bytes | None] = []
        for opened in await self.open_each(db, records):
            if isinstance(opened, Unopened):
                if not opened.erased:
                    raise SealError(opened.reason)
                out.append(None)
            else:
                out.append(opened)
        return out

    async def open_each(self, db: Db, records: Sequence[Any]) -> list[bytes | Unopened]:
        """Each record's plaintext value, or why it cannot be had (never raises for one
        record: a consumer dead-letters that one and goes on)."""
        seals: list[Seal | Unopened | None] = []
        for record in records:
            try:
                seals.append(Seal.of(header_map(_items(record.headers))))
            except SealError as exc:
                seals.append(Unopened(str(exc), erased=False))
        keys = await self._keys_of(db, {s.key_id for s in seals if isinstance(s, Seal)})
        out: list[bytes | Unopened] = []
        for record, found in zip(records, seals, strict=True):
            if found is None:
                out.append(record.value or b"")
            elif isinstance(found, Unopened):
                out.append(found)
            elif found.scheme != "customer":
                out.append(Unopened(f"{found.scheme}-sealed records are not opened here", False))
            elif (key := keys.get(found.key_id)) is None:
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

    async def _keys_of(self, db: Db, key_ids: set[str]) -> dict[str, bytes]:
        """The keys of ``key_ids`` that exist, from the cache or one query for the rest."""
        now = time.monotonic()
        found = {k: c[1] for k in key_ids if (c := self._keys.get(k)) and c[0] > now}
        missing = key_ids - found.keys()
        if missing:
            rows = await db.fetch(
                "SELECT key_id, key FROM customer_keys WHERE key_id = ANY($1::uuid[])",
                [uuid.UUID(k) for k in missing],
            )
            if len(self._keys) > CACHE_LIMIT:
                self._keys.clear()
            for row in rows:
                key_id, key = str(row["key_id"]), bytes(row["key"])
                self._keys[key_id] = (now + CACHE_SECONDS, key)
                found[key_id] = key
        return found


def _items(headers: Any) -> Any:
    """A record's headers as (name, value) pairs (faust hands some over as a dict)."""
    return headers.items() if isinstance(headers, dict) else headers

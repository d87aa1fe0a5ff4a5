"""Open sealed records inside the hub (the processors, the dispatcher, the benchmark's
watchers, tests): customer keys by id and period keys by period from PostgreSQL, fetched once a
batch for those not cached, trusted ``CACHE_SECONDS`` like the keys that seal them.
Departments use GET /v1/keys/{id}."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.cloudevents import header_map
from schemas.sealing import Seal, SealError, open_sealed, period_data_key
from services.keys.periods import private_keys
from services.keys.store import CACHE_LIMIT, CACHE_SECONDS, Db


@dataclass(frozen=True, slots=True)
class Unopened:
    """Why a sealed record's value cannot be had; ``erased``: its key was deleted."""

    reason: str
    erased: bool


class SealedReader:
    """Plaintext values of consumed records: plain, sealed with a customer key or with a
    period key (raw records)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[float, bytes]] = {}  # key id -> (trusted until, key)
        self._periods: dict[str, tuple[float, bytes]] = {}  # period -> (until, private key)
        self._senders: dict[tuple[str, str], bytes] = {}  # (period, ephemeral) -> data key

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
        found_seals = [s for s in seals if isinstance(s, Seal)]
        keys = await self._keys_of(db, {s.key_id for s in found_seals if s.scheme == "customer"})
        periods = await self._periods_of(
            db, {s.key_id for s in found_seals if s.scheme == "period"}
        )
        out: list[bytes | Unopened] = []
        for record, found in zip(records, seals, strict=True):
            if found is None:
                out.append(record.value or b"")
            elif isinstance(found, Unopened):
                out.append(found)
            else:
                out.append(self._open(found, keys, periods, record.value or b""))
        return out

    def _open(
        self, found: Seal, keys: dict[str, bytes], periods: dict[str, bytes], value: bytes
    ) -> bytes | Unopened:
        if found.scheme == "customer":
            key = keys.get(found.key_id)
            gone = "its customer was erased"
        else:
            private = periods.get(found.key_id)
            key = None if private is None else self._sender_key(found, private)
            gone = "its period's key was deleted after OMNIHUB_RAW_RECORD_DAYS"
        if key is None:
            return Unopened(
                f"sealed with key {found.key_id}, which no longer exists ({gone})", True
            )
        try:
            return open_sealed(key, found.key_id, value)
        except SealError as exc:
            return Unopened(str(exc), erased=False)

    def _sender_key(self, found: Seal, private: bytes) -> bytes | None:
        """The data key one sender used in a period (one X25519 agreement a sender)."""
        at = (found.key_id, found.ephemeral)
        key = self._senders.get(at)
        if key is None:
            try:
                key = period_data_key(private, found.key_id, found.ephemeral)
            except SealError:
                return None
            if len(self._senders) > CACHE_LIMIT:
                self._senders.clear()
            self._senders[at] = key
        return key

    async def _periods_of(self, db: Db, periods: set[str]) -> dict[str, bytes]:
        """The private keys of ``periods`` that exist, from the cache or one query."""
        found = await _cached(self._periods, periods, lambda missing: private_keys(db, missing))
        for period in periods - found.keys():  # deleted: its senders' keys go too
            self._senders = {k: v for k, v in self._senders.items() if k[0] != period}
        return found

    async def _keys_of(self, db: Db, key_ids: set[str]) -> dict[str, bytes]:
        """The keys of ``key_ids`` that exist, from the cache or one query for the rest."""

        async def fetch(missing: set[str]) -> dict[str, bytes]:
            rows = await db.fetch(
                "SELECT key_id, key FROM customer_keys WHERE key_id = ANY($1::uuid[])",
                [u for k in missing if (u := _uuid(k)) is not None],
            )
            return {str(row["key_id"]): bytes(row["key"]) for row in rows}

        return await _cached(self._keys, key_ids, fetch)


async def _cached(
    cache: dict[str, tuple[float, bytes]],
    wanted: set[str],
    fetch: Callable[[set[str]], Awaitable[dict[str, bytes]]],
) -> dict[str, bytes]:
    """The keys of ``wanted`` that exist: from ``cache`` while trusted, the rest ``fetch``ed
    in one call and cached ``CACHE_SECONDS``."""
    now = time.monotonic()
    found = {k: c[1] for k in wanted if (c := cache.get(k)) and c[0] > now}
    missing = wanted - found.keys()
    if missing:
        fetched = await fetch(missing)
        if len(cache) > CACHE_LIMIT:
            cache.clear()
        for name, key in fetched.items():
            cache[name] = (now + CACHE_SECONDS, key)
        found.update(fetched)
    return found


def _items(headers: Any) -> Any:
    """A record's headers as (name, value) pairs (faust hands some over as a dict)."""
    return headers.items() if isinstance(headers, dict) else headers


def _uuid(text: str) -> uuid.UUID | None:
    """``text`` as a UUID (a customer key id), None when it is not one."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None

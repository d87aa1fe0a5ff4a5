"""Consent per customer, channel and purpose: batched writes, newest statement wins."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from schemas import Channel, ConsentChange, Purpose

_UPSERT = """
INSERT INTO consents (customer_id, channel, purpose, granted, reason, source_event, changed_at)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::text[], $6::uuid[],
                     $7::timestamptz[])
ON CONFLICT (customer_id, channel, purpose) DO UPDATE
SET granted = EXCLUDED.granted, reason = EXCLUDED.reason, source_event = EXCLUDED.source_event,
    changed_at = EXCLUDED.changed_at
WHERE consents.changed_at <= EXCLUDED.changed_at
"""

_READ = """
SELECT customer_id, channel, purpose, granted, reason, changed_at
FROM consents WHERE customer_id = ANY($1::uuid[])
"""


@dataclass(frozen=True)
class ConsentWrite:
    """One consent statement for one customer."""

    customer_id: uuid.UUID
    change: ConsentChange
    at: datetime
    source_event: uuid.UUID | None = None


async def apply_changes(conn: asyncpg.Connection, writes: Sequence[ConsentWrite]) -> None:
    """Store consent statements in one round trip; an older statement never wins."""
    if not writes:
        return
    latest: dict[tuple[uuid.UUID, str, str], ConsentWrite] = {}
    for write in writes:
        key = (write.customer_id, str(write.change.channel), write.change.purpose.value)
        if key not in latest or latest[key].at <= write.at:
            latest[key] = write
    rows = [
        (
            w.customer_id,
            str(w.change.channel),
            w.change.purpose.value,
            w.change.granted,
            w.change.reason,
            w.source_event,
            w.at,
        )
        for w in latest.values()
    ]
    await conn.execute(_UPSERT, *(list(c) for c in zip(*rows, strict=True)))


class ConsentBook:
    """The consents of some customers, answering "may we contact them here for this?"."""

    def __init__(self, rows: Iterable[asyncpg.Record]) -> None:
        self._rows: dict[tuple[uuid.UUID, str, str], bool] = {
            (r["customer_id"], r["channel"], r["purpose"]): r["granted"] for r in rows
        }
        self._withdrawing = {key[0] for key, granted in self._rows.items() if not granted}

    def withdrew_any(self, customer_id: uuid.UUID) -> bool:
        """Whether the customer withdrew anything at all (most never did: a quick answer)."""
        return customer_id in self._withdrawing

    def allows(self, customer_id: uuid.UUID, channel: Channel | str, purpose: Purpose) -> bool:
        """Granted unless withdrawn: the channel's own statement beats the all-channel one."""
        own = self._rows.get((customer_id, str(channel), purpose.value))
        if own is not None:
            return own
        every = self._rows.get((customer_id, "*", purpose.value))
        return True if every is None else every


async def load(conn: asyncpg.Connection, customer_ids: Iterable[uuid.UUID]) -> ConsentBook:
    """Read the consents of ``customer_ids`` in one query."""
    return ConsentBook(await conn.fetch(_READ, list(set(customer_ids))))


async def listing(conn: asyncpg.Connection, customer_id: uuid.UUID) -> list[dict[str, object]]:
    """Every consent statement of one customer, for the API."""
    rows = await conn.fetch(_READ + " ORDER BY channel, purpose", [customer_id])
    return [
        {
            "channel": r["channel"],
            "purpose": r["purpose"],
            "granted": r["granted"],
            "reason": r["reason"],
            "changed_at": r["changed_at"].isoformat(),
        }
        for r in rows
    ]

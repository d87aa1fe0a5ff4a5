"""What routing reads from PostgreSQL for a batch: consents, and profiles when rules use them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from schemas import Channel, Purpose
from services.customers import consent
from services.customers.consent import ConsentBook

_PROFILES = """
SELECT c.id, c.display_name, c.created_at, p.name, p.language, p.preferred_channel,
       coalesce(p.attributes, '{}'::jsonb) AS attributes,
       coalesce(array_agg(DISTINCT i.type) FILTER (WHERE i.type IS NOT NULL), '{}') AS types
FROM customers c
LEFT JOIN customer_profiles p ON p.customer_id = c.id
LEFT JOIN identities i ON i.customer_id = c.id
WHERE c.id = ANY($1::uuid[])
GROUP BY c.id, p.customer_id
"""

#: Every channel plus "*": asking ConsentBook about each finds a withdrawal on any channel.
_CHANNELS = [*Channel]


def withdrawn(book: ConsentBook, customer_id: uuid.UUID) -> frozenset[str]:
    """Purposes the customer withdrew consent for, on any channel (stricter than per channel)."""
    if not book.withdrew_any(customer_id):
        return frozenset()
    return frozenset(
        p.value
        for p in Purpose
        if not all(book.allows(customer_id, channel, p) for channel in _CHANNELS)
    )


@dataclass
class Lookups:
    """Consents (and profiles) of a batch's customers."""

    book: ConsentBook
    profiles: dict[uuid.UUID, dict[str, Any]] = field(default_factory=dict)

    def withdrawn(self, customer_id: uuid.UUID) -> frozenset[str]:
        """Purposes withdrawn by the customer."""
        return withdrawn(self.book, customer_id)

    def profile(self, customer_id: uuid.UUID) -> Mapping[str, Any]:
        """The ``customer.*`` fields rules may read (empty unless the ruleset reads them)."""
        return self.profiles.get(customer_id, {})


def profile_fields(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    """The fields of one customer as rules see them (``customer.<name>``)."""
    attributes = row["attributes"]
    if isinstance(attributes, str):  # a connection without the pool's JSON codec
        attributes = json.loads(attributes)
    fields: dict[str, Any] = {
        "display_name": row["display_name"],
        "created_at": row["created_at"].isoformat(),
        "age_days": (now - row["created_at"]).days,
        "identity_types": sorted(row["types"]),
        "name": row["name"],
        "language": row["language"],
        "preferred_channel": row["preferred_channel"],
    }
    fields.update({f"attributes.{k}": v for k, v in (attributes or {}).items()})
    return fields


async def load(
    conn: asyncpg.Connection, customer_ids: Iterable[uuid.UUID], with_profiles: bool
) -> Lookups:
    """One query for consents; a second one only when the rules read customer fields."""
    ids = list(set(customer_ids))
    book = await consent.load(conn, ids)
    if not with_profiles:
        return Lookups(book)
    now = datetime.now(UTC)
    rows = await conn.fetch(_PROFILES, ids)
    return Lookups(book, {r["id"]: profile_fields(r, now) for r in rows})

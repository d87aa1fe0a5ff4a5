"""The CRM profile of a customer, and which value survives a merge (survivorship rules)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from schemas import Channel
from schemas.identities import StorableDict, StorableStr
from services.identity.rules import PROFILE_FIELDS

if TYPE_CHECKING:
    from services.identity.rules import IdentityRules


class Address(BaseModel):
    """A postal address (no NUL in its strings: PostgreSQL cannot store it)."""

    model_config = ConfigDict(extra="forbid")

    label: StorableStr | None = Field(default=None, max_length=100)
    lines: list[StorableStr] = Field(default_factory=list, max_length=6)
    postal_code: StorableStr | None = Field(default=None, max_length=20)
    city: StorableStr | None = Field(default=None, max_length=200)
    country: StorableStr | None = Field(
        default=None, max_length=2, description="ISO 3166-1 alpha-2"
    )


class ProfileUpdate(BaseModel):
    """Fields to set on a profile; omitted fields are left alone (no NUL in any string, keys
    included: PostgreSQL cannot store it, so it is refused with 422 here, not a 500 there)."""

    model_config = ConfigDict(extra="forbid")

    name: StorableStr | None = Field(default=None, max_length=300)
    birth_date: date | None = None
    language: StorableStr | None = Field(default=None, max_length=35)
    preferred_channel: Channel | None = None
    addresses: list[Address] | None = Field(default=None, max_length=20)
    attributes: StorableDict[StorableStr | int | float | bool | None] | None = None


_FIELDS = PROFILE_FIELDS
_SELECT = (
    "SELECT customer_id, name, birth_date, language, preferred_channel, addresses::text,"
    " attributes::text, field_times::text, created_at FROM customer_profiles"
)


def _decode(row: asyncpg.Record | None) -> dict[str, Any] | None:
    if row is None:
        return None
    data = dict(row)
    for name in ("addresses", "attributes", "field_times"):
        data[name] = json.loads(data[name])
    return data


async def read(conn: asyncpg.Connection, customer_id: uuid.UUID) -> dict[str, Any] | None:
    """The profile of one customer, or None when nothing was ever set."""
    return _decode(await conn.fetchrow(_SELECT + " WHERE customer_id = $1", customer_id))


async def update(
    conn: asyncpg.Connection, customer_id: uuid.UUID, change: ProfileUpdate, at: datetime
) -> None:
    """Set the given fields, recording when each was set."""
    fields = change.model_dump(mode="json", exclude_unset=True)
    current = await read(conn, customer_id) or {
        "field_times": {},
        "addresses": [],
        "attributes": {},
    }
    merged = {name: current.get(name) for name in _FIELDS}
    for name, value in fields.items():
        if name == "attributes" and value is not None:
            value = {**(current.get("attributes") or {}), **value}
        merged[name] = value
        current["field_times"][name] = at.isoformat()
    await _write(conn, customer_id, merged, current["field_times"])


_UPSERT = """
INSERT INTO customer_profiles (customer_id, name, birth_date, language, preferred_channel,
                               addresses, attributes, field_times)
VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::jsonb, $8::text::jsonb)
ON CONFLICT (customer_id) DO UPDATE SET
  name = EXCLUDED.name, birth_date = EXCLUDED.birth_date, language = EXCLUDED.language,
  preferred_channel = EXCLUDED.preferred_channel, addresses = EXCLUDED.addresses,
  attributes = EXCLUDED.attributes, field_times = EXCLUDED.field_times, updated_at = now()
"""


def _row(customer_id: uuid.UUID, fields: dict[str, Any], times: dict[str, str]) -> tuple[Any, ...]:
    """``_UPSERT``'s arguments for one profile."""
    birth = fields.get("birth_date")
    if isinstance(birth, str):
        birth = date.fromisoformat(birth)
    return (
        customer_id,
        fields.get("name"),
        birth,
        fields.get("language"),
        fields.get("preferred_channel"),
        json.dumps(fields.get("addresses") or []),
        json.dumps(fields.get("attributes") or {}),
        json.dumps(times),
    )


async def _write(
    conn: asyncpg.Connection, customer_id: uuid.UUID, fields: dict[str, Any], times: dict[str, str]
) -> None:
    await conn.execute(_UPSERT, *_row(customer_id, fields, times))


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def survive(
    rule: str, survivor: tuple[Any, str | None, datetime], merged: tuple[Any, str | None, datetime]
) -> tuple[Any, str | None]:
    """Pick a field's value: each side is (value, time set, customer created)."""
    sides = [s for s in (survivor, merged) if not _empty(s[0])]
    if not sides:
        return survivor[0], survivor[1]
    if rule == "non_empty":
        chosen = sides[0]
    elif rule == "oldest":
        chosen = min(sides, key=lambda s: (s[1] or "9999", s[2]))
    else:  # most_recent
        chosen = max(sides, key=lambda s: (s[1] or "", s[2]))
    return chosen[0], chosen[1]


def _combine(kept: dict[str, Any], gone: dict[str, Any], rules: IdentityRules) -> dict[str, Any]:
    """The profile two customers' profiles make, field by field with the survivorship rules
    (``gone`` merged into ``kept``); the survivor keeps its own ``created_at``."""
    fields: dict[str, Any] = {}
    times: dict[str, str] = {}
    for name in _FIELDS:
        value, at = survive(
            rules.rule_for(name),
            (kept.get(name), kept["field_times"].get(name), kept["created_at"]),
            (gone.get(name), gone["field_times"].get(name), gone["created_at"]),
        )
        if name == "attributes" and rules.rule_for(name) == "most_recent":
            older, newer = sorted(
                [
                    (kept["field_times"].get(name) or "", kept.get(name) or {}),
                    (gone["field_times"].get(name) or "", gone.get(name) or {}),
                ],
                key=lambda side: side[0],
            )
            value = {**older[1], **newer[1]}
        fields[name] = value
        if at:
            times[name] = at
    return {**fields, "field_times": times, "created_at": kept["created_at"]}


async def merge_all(
    conn: asyncpg.Connection,
    pairs: Sequence[tuple[uuid.UUID, uuid.UUID]],
    rules: IdentityRules,
) -> None:
    """Combine the profiles of each (merged, survivor) pair, in order, with the configured
    survivorship rules: every profile involved read at once, combined in memory (a survivor
    merged away later in the list passes on what it gathered), the survivors' written and the
    merged ones deleted."""
    involved = list({customer for pair in pairs for customer in pair})
    rows = await conn.fetch(_SELECT + " WHERE customer_id = ANY($1::uuid[])", involved)
    profiles = {row["customer_id"]: _decode(row) for row in rows}
    if not profiles:
        return
    changed: dict[uuid.UUID, dict[str, Any]] = {}
    gone: list[uuid.UUID] = []
    created: datetime | None = None  # a new profile row's created_at: the transaction's now()
    for merged, survivor in pairs:
        lost = profiles.pop(merged, None)
        if lost is None:
            continue
        gone.append(merged)
        changed.pop(merged, None)
        kept = profiles.get(survivor)
        blank = {"field_times": {}, "created_at": lost["created_at"], **dict.fromkeys(_FIELDS)}
        combined = _combine(kept or blank, lost, rules)
        if kept is None:  # the survivor's first profile: its row is created now
            created = created or await conn.fetchval("SELECT now()")
            combined["created_at"] = created
        profiles[survivor] = changed[survivor] = combined
    if changed:
        rows_out = [_row(c, p, p["field_times"]) for c, p in changed.items()]
        await conn.executemany(_UPSERT, rows_out)
    if gone:
        await conn.execute(
            "DELETE FROM customer_profiles WHERE customer_id = ANY($1::uuid[])", gone
        )

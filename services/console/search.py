"""Find customers by name, email, phone or any identity."""

from __future__ import annotations

import re
import uuid
from typing import Any

import asyncpg
from pydantic import ValidationError

from schemas import Identity, IdentityType
from services.console.forms import storable
from services.customers import store

LIMIT = 50
_PHONE = re.compile(r"^\+?[\d\s().\-/]{6,}$")

_BY_NAME_OR_VALUE = """
SELECT c.id FROM customers c
LEFT JOIN customer_profiles p ON p.customer_id = c.id
WHERE c.status = 'active'
  AND (p.name ILIKE $1 ESCAPE '\\' OR c.display_name ILIKE $1 ESCAPE '\\'
       OR EXISTS (SELECT 1 FROM identities i WHERE i.customer_id = c.id AND i.value = $2))
ORDER BY c.created_at DESC
LIMIT $3
"""


class Unsearchable(ValueError):
    """A query the database cannot compare with anything (it holds NUL)."""


def identity_in(text: str) -> Identity | None:
    """The identity a query names: ``type:value``, an email address or a phone number."""
    candidates: list[dict[str, str]] = []
    kind = text.partition(":")[0]
    if kind in {t.value for t in IdentityType}:
        try:
            return Identity.parse(text)
        except (ValueError, ValidationError):
            return None
    if "@" in text:
        candidates.append({"type": "email", "value": text})
    elif _PHONE.match(text):
        candidates.append({"type": "phone", "value": text})
    for candidate in candidates:
        try:
            return Identity.model_validate(candidate)
        except ValidationError:
            return None
    return None


def _like(text: str) -> str:
    return "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"


async def search(conn: asyncpg.Connection, text: str) -> list[dict[str, Any]]:
    """Customers matching ``text``: an identity exactly, else a name (substring) or any
    identity value exactly; Unsearchable when it holds NUL."""
    text = text.strip()[:320]
    if not text:
        return []
    if not storable(text):
        raise Unsearchable("A search cannot contain a NUL character (U+0000).")
    identity = identity_in(text)
    ids: list[uuid.UUID] = []
    if identity is not None:
        ids = await store.find_by_identity(conn, identity)
    if not ids:
        ids = [r["id"] for r in await conn.fetch(_BY_NAME_OR_VALUE, _like(text), text, LIMIT)]
    found = []
    for customer_id in dict.fromkeys(ids):
        customer = await store.customer(conn, customer_id)
        if customer is not None:
            found.append(customer)
    return found


def display_name(customer: dict[str, Any]) -> str:
    """How the console names a customer: profile name, display name, or first identity."""
    name = (customer.get("profile") or {}).get("name") or customer.get("display_name")
    if name:
        return str(name)
    if customer.get("identities"):
        return str(customer["identities"][0]["value"])
    return str(customer["id"])

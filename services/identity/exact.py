"""Exact-match identity resolution for a batch of interactions, in three round trips."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from schemas import Identity, Interaction
from schemas.ids import customer_id_for

_FETCH = """
SELECT i.type, i.scope, i.value, i.customer_id
FROM identities i
JOIN unnest($1::text[], $2::text[], $3::text[]) AS k(type, scope, value)
  ON i.type = k.type AND i.scope = k.scope AND i.value = k.value
"""
_NEW_CUSTOMERS = """
INSERT INTO customers (id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING
"""
_NEW_LINKS = """
INSERT INTO identities (type, scope, value, customer_id, first_event)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::uuid[])
ON CONFLICT DO NOTHING
"""

IdentityKey = tuple[str, str, str]


def _key(identity: Identity) -> IdentityKey:
    return (identity.type.value, identity.scope, identity.value)


async def _fetch(
    conn: asyncpg.Connection, keys: Sequence[IdentityKey]
) -> dict[IdentityKey, uuid.UUID]:
    if not keys:
        return {}
    types, scopes, values = zip(*keys, strict=True)
    rows = await conn.fetch(_FETCH, list(types), list(scopes), list(values))
    return {(r["type"], r["scope"], r["value"]): r["customer_id"] for r in rows}


async def resolve_exact(
    conn: asyncpg.Connection, interactions: Sequence[Interaction]
) -> list[uuid.UUID]:
    """Return each interaction's customer id, creating customers and links as needed.

    What the hub sent belongs to the customer it was sent to (``customer_id``). Otherwise an
    interaction belongs to the customer of its first known identity; unknown identities
    are linked to that customer; with none known, a new customer is created whose id is
    derived from the first identity, so workers racing on the same person agree.
    """
    keys = list(dict.fromkeys(_key(i) for it in interactions for i in it.identities))
    known = await _fetch(conn, keys)
    new_customers: dict[uuid.UUID, None] = {}
    links: list[tuple[str, str, str, uuid.UUID, uuid.UUID]] = []
    for interaction in interactions:
        own = [_key(i) for i in interaction.identities]
        customer = interaction.customer_id or next((known[k] for k in own if k in known), None)
        if customer is None:
            customer = customer_id_for(interaction.identities[0].key)
            new_customers[customer] = None
        for key in own:
            if key not in known:
                known[key] = customer
                links.append((*key, customer, interaction.event_id))
    if links:
        async with conn.transaction():
            await conn.execute(_NEW_CUSTOMERS, list(new_customers))
            columns = list(zip(*links, strict=True))
            await conn.execute(_NEW_LINKS, *(list(c) for c in columns))
        # Another worker may have linked some of these first: the database decides.
        known.update(await _fetch(conn, [link[:3] for link in links]))
    return [
        interaction.customer_id
        or next(known[_key(i)] for i in interaction.identities if _key(i) in known)
        for interaction in interactions
    ]

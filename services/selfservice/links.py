"""One-time sign-in links: asked for by address, sent to that address only if a customer
holds it, single-use, expiring, and rate-limited per address and per asking IP address.

The answer to the asker is the same whether or not the address is known, so the form tells
nobody who is a customer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from schemas import Channel, Identity, IdentityType
from services.selfservice.tokens import digest, new_token

#: A link works this long, once.
LINK_MINUTES = 15
#: Links one address may be sent in WINDOW_MINUTES, and requests one IP address may make.
PER_ADDRESS = 3
PER_SOURCE = 20
WINDOW_MINUTES = 60

#: Which channel carries a link to which kind of address.
CHANNEL_FOR = {IdentityType.EMAIL: Channel.EMAIL, IdentityType.PHONE: Channel.SMS}


def address_of(text: str) -> Identity | None:
    """The email address or phone number (E.164, with its +) typed into the form, or None."""
    text = text.strip()[:320]
    kind = IdentityType.EMAIL if "@" in text else IdentityType.PHONE
    try:
        return Identity(type=kind, value=text)
    except ValueError:
        return None


@dataclass(frozen=True)
class LinkToSend:
    """A new link's token (shown only in the message) and who gets it where."""

    token: str
    customer_id: uuid.UUID
    to: Identity
    channel: Channel


class Throttled(Exception):
    """Too many link requests for this address or from this IP address."""


_COUNT = """
WITH recent AS (
    SELECT count(*) FILTER (WHERE address_hash = $1) AS by_address,
           count(*) FILTER (WHERE source = $2) AS by_source
    FROM self_service_link_requests
    WHERE (address_hash = $1 OR source = $2) AND at > now() - make_interval(mins => $3)
)
SELECT by_address, by_source FROM recent
"""


async def request_link(
    conn: asyncpg.Connection, address: Identity, source: str
) -> LinkToSend | None:
    """Count the request, then make a link for the customer holding ``address`` (None when
    nobody does). Raises Throttled beyond the limits. Serialised per address by an advisory
    lock, so concurrent requests cannot all pass the count."""
    address_hash = digest(address.key)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", address_hash)
        await conn.execute(
            "DELETE FROM self_service_link_requests WHERE at < now() - make_interval(mins => $1)",
            WINDOW_MINUTES * 2,
        )
        counts = await conn.fetchrow(_COUNT, address_hash, source, WINDOW_MINUTES)
        if counts["by_address"] >= PER_ADDRESS or counts["by_source"] >= PER_SOURCE:
            raise Throttled
        await conn.execute(
            "INSERT INTO self_service_link_requests (address_hash, source) VALUES ($1, $2)",
            address_hash,
            source,
        )
        customer_id = await _holder(conn, address)
        if customer_id is None:
            return None
        token = await _new_link(conn, customer_id, address.key)
    return LinkToSend(token, customer_id, address, CHANNEL_FOR[address.type])


async def _holder(conn: asyncpg.Connection, identity: Identity) -> uuid.UUID | None:
    """The live customer holding ``identity`` (the survivor of a merge), if any."""
    found: uuid.UUID | None = await conn.fetchval(
        "SELECT coalesce(c.merged_into, c.id) FROM identities i"
        " JOIN customers c ON c.id = i.customer_id"
        " WHERE i.type = $1 AND i.scope = $2 AND i.value = $3 AND c.status <> 'deleted'",
        identity.type.value,
        identity.scope,
        identity.value,
    )
    return found


async def _new_link(conn: asyncpg.Connection, customer_id: uuid.UUID, sent_to: str) -> str:
    token = new_token()
    await conn.execute(
        "INSERT INTO self_service_links (token_hash, customer_id, sent_to, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(mins => $4))",
        digest(token),
        customer_id,
        sent_to,
        LINK_MINUTES,
    )
    return token


class PgAccountLinks:
    """``channels.base.AccountLinks``: tokens for customers a channel proved (a web chat
    visitor the site signed in), handed over their own connection; single use, expiring, as
    mailed links are."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def sign_in_token(self, who: Identity) -> str | None:
        """A token for the customer holding ``who``; None when nobody does yet."""
        try:
            async with self._pool.acquire() as conn:
                customer_id = await _holder(conn, who)
                if customer_id is None:
                    return None
                return await _new_link(conn, customer_id, f"session:{who.key}")
        except asyncpg.PostgresError as exc:  # the channel knows OSError only
            raise OSError(f"no sign-in token: {exc}") from exc


async def use_link(conn: asyncpg.Connection, token: str) -> uuid.UUID | None:
    """The customer a live, unused link signs in (marking it used), or None."""
    found: uuid.UUID | None = await conn.fetchval(
        "UPDATE self_service_links SET used_at = now()"
        " WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()"
        " RETURNING customer_id",
        digest(token),
    )
    return found


def new_form_token() -> str:
    """The value a sign-in form and its cookie share (login CSRF, double submit)."""
    return new_token()

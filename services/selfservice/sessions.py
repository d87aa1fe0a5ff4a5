"""Customers' sessions: apart from the console's (own table, own cookie, path /me), a random
id in an HttpOnly cookie, its digest and a CSRF token in the database."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass

import asyncpg

from services.identity import manual
from services.selfservice.tokens import digest, new_token

COOKIE = "omnihub_me"
LIFETIME_HOURS = 8


@dataclass(frozen=True)
class CustomerSession:
    """A signed-in customer: who (the live id, after merges) and the CSRF token."""

    customer_id: uuid.UUID
    csrf_token: str

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether a request carried this session's CSRF token (constant-time compare)."""
        return bool(presented) and hmac.compare_digest(presented or "", self.csrf_token)


async def open_session(conn: asyncpg.Connection, customer_id: uuid.UUID) -> str:
    """Create a session; return the cookie value (shown to the browser only)."""
    session_id = new_token()
    await conn.execute(
        "INSERT INTO self_service_sessions (id_hash, customer_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        digest(session_id),
        customer_id,
        new_token(),
        LIFETIME_HOURS,
    )
    return session_id


async def find(conn: asyncpg.Connection, session_id: str) -> CustomerSession | None:
    """The live session of a cookie value, or None (unknown, expired, customer erased). A
    customer merged since answers as the survivor."""
    row = await conn.fetchrow(
        "UPDATE self_service_sessions SET last_seen = now()"
        " WHERE id_hash = $1 AND expires_at > now() RETURNING customer_id, csrf_token",
        digest(session_id),
    )
    if row is None:
        return None
    live = await manual.live_id(conn, row["customer_id"])
    if live is None:
        return None
    return CustomerSession(live, row["csrf_token"])


async def close_session(conn: asyncpg.Connection, session_id: str) -> None:
    """Sign out (expired sessions go too)."""
    await conn.execute(
        "DELETE FROM self_service_sessions WHERE id_hash = $1 OR expires_at < now()",
        digest(session_id),
    )

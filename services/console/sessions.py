"""Server-side sessions: a random id in an HttpOnly cookie, its hash and a CSRF token here."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

import asyncpg

from services.console.users import User, user_of

COOKIE = "omnihub_session"
LIFETIME_HOURS = 12


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, and the token its state-changing requests must carry."""

    user: User
    csrf_token: str

    def csrf_ok(self, presented: str | None) -> bool:
        """Whether a request carried this session's CSRF token (constant-time compare)."""
        return bool(presented) and hmac.compare_digest(presented or "", self.csrf_token)


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(conn: asyncpg.Connection, user_id: uuid.UUID) -> str:
    """Create a session for the user; return the cookie value (shown to the browser only)."""
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO console_sessions (id_hash, user_id, csrf_token, expires_at)"
        " VALUES ($1, $2, $3, now() + make_interval(hours => $4))",
        _digest(session_id),
        user_id,
        secrets.token_urlsafe(32),
        LIFETIME_HOURS,
    )
    return session_id


async def find(conn: asyncpg.Connection, session_id: str) -> Session | None:
    """The live session of a cookie value, or None (unknown, expired, user disabled)."""
    row = await conn.fetchrow(
        "UPDATE console_sessions s SET last_seen = now() FROM console_users u"
        " WHERE s.id_hash = $1 AND s.expires_at > now() AND u.id = s.user_id AND NOT u.disabled"
        " RETURNING u.*, s.csrf_token",
        _digest(session_id),
    )
    if row is None:
        return None
    return Session(user=user_of(row), csrf_token=row["csrf_token"])


async def close_session(conn: asyncpg.Connection, session_id: str) -> None:
    """Sign out: forget the session (expired ones go too)."""
    await conn.execute(
        "DELETE FROM console_sessions WHERE id_hash = $1 OR expires_at < now()",
        _digest(session_id),
    )

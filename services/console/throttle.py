"""Sign-in throttling: after too many failures for a username, refuse attempts for a while."""

from __future__ import annotations

import asyncpg

MAX_FAILURES = 5
WINDOW_MINUTES = 15


async def blocked(conn: asyncpg.Connection, username: str) -> bool:
    """Whether ``username`` failed MAX_FAILURES times within the window."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM console_login_failures WHERE username = $1"
        " AND at > now() - make_interval(mins => $2)",
        username.strip().lower(),
        WINDOW_MINUTES,
    )
    return count >= MAX_FAILURES


async def failed(conn: asyncpg.Connection, username: str) -> None:
    """Record a failed attempt (old ones are pruned on the way)."""
    await conn.execute(
        "DELETE FROM console_login_failures WHERE at < now() - make_interval(mins => $1)",
        WINDOW_MINUTES,
    )
    await conn.execute(
        "INSERT INTO console_login_failures (username) VALUES ($1)", username.strip().lower()[:100]
    )


async def succeeded(conn: asyncpg.Connection, username: str) -> None:
    """A successful sign-in clears the username's failures."""
    await conn.execute(
        "DELETE FROM console_login_failures WHERE username = $1", username.strip().lower()
    )

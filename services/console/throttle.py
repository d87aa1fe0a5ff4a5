"""Sign-in throttling per username and source address, with growing delays; sign-in events.

Each attempt is counted *before* its password is checked, by one statement that increments
the count and decides (``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``): concurrent
attempts queue on the row, so at most MAX_FAILURES of them are checked before the delays
begin. A success takes its attempt back. The counts are per (source address, username): an
attacker hammering a username from one address slows only that address, never the user
signing in from elsewhere; a second count per address across usernames (ADDRESS_MAX_FAILURES)
slows password spraying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

#: Attempts per (address, username) checked freely; each further one waits delay() seconds.
MAX_FAILURES = 5
#: The same per address, whatever the usernames (password spraying).
ADDRESS_MAX_FAILURES = 50
FIRST_DELAY_SECONDS = 4
MAX_DELAY_SECONDS = 900
#: A count untouched this long (after its wait ended) starts again from zero.
IDLE_RESET_MINUTES = 15
#: Sign-in events older than this are deleted.
EVENTS_KEPT_DAYS = 90

Outcome = Literal["success", "failure", "throttled"]


@dataclass(frozen=True)
class Verdict:
    """Whether an attempt may check its password; if not, how long to wait."""

    allowed: bool
    wait_seconds: int = 0


def delay(attempts: int, free: int = MAX_FAILURES) -> int:
    """Seconds the attempt after the ``attempts``-th must wait: 0, then 4, 8, 16 ... capped."""
    if attempts < free:
        return 0
    return min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS << min(attempts - free, 30))


def _key(username: str) -> str:
    return username.strip().lower()[:100]


_NEXT = (
    "CASE WHEN greatest(t.last_at, t.wait_until) < now() - make_interval(mins => $5)"
    " THEN 1 ELSE t.attempts + 1 END"
)


def _wait(n: str) -> str:
    return (
        f"CASE WHEN ({n}) >= $2 THEN now() + make_interval(secs =>"
        f" least($4::float8, $3::float8 * power(2, least(({n}) - $2, 30))))"
        " ELSE '-infinity'::timestamptz END"
    )


# One statement: the row lock taken by ON CONFLICT DO UPDATE serialises concurrent attempts,
# and each sees the count the one before it left.
_TAKE = f"""
INSERT INTO console_signin_throttle AS t (key, attempts, last_at, wait_until, allowed)
VALUES ($1, 1, now(), {_wait("1")}, true)
ON CONFLICT (key) DO UPDATE SET
    allowed = t.wait_until <= now(),
    attempts = CASE WHEN t.wait_until > now() THEN t.attempts ELSE {_NEXT} END,
    last_at = CASE WHEN t.wait_until > now() THEN t.last_at ELSE now() END,
    wait_until = CASE WHEN t.wait_until > now() THEN t.wait_until ELSE {_wait(_NEXT)} END
RETURNING allowed,
    CASE WHEN wait_until > now() THEN ceil(extract(epoch FROM wait_until - now()))::int
         ELSE 0 END AS wait_seconds
"""  # noqa: S608 - constant SQL fragments; the values are parameters


async def _take(conn: asyncpg.Connection, key: str, free: int) -> Verdict:
    row = await conn.fetchrow(
        _TAKE, key, free, float(FIRST_DELAY_SECONDS), float(MAX_DELAY_SECONDS), IDLE_RESET_MINUTES
    )
    return Verdict(row["allowed"], 0 if row["allowed"] else max(1, row["wait_seconds"]))


async def attempt(conn: asyncpg.Connection, username: str, address: str) -> Verdict:
    """Count a sign-in attempt of ``username`` from ``address``; may its password be checked?"""
    transaction = conn.transaction()
    await transaction.start()
    try:
        # Always the pair's row first, then the address's: no two attempts lock in turn.
        verdict = await _take(conn, f"user:{address} {_key(username)}", MAX_FAILURES)
        if verdict.allowed:
            spread = await _take(conn, f"addr:{address}", ADDRESS_MAX_FAILURES)
            if not spread.allowed:
                await transaction.rollback()  # a refused attempt is not counted for the pair
                return spread
    except BaseException:
        await transaction.rollback()
        raise
    await transaction.commit()
    return verdict


async def succeeded(conn: asyncpg.Connection, username: str, address: str) -> None:
    """A successful sign-in clears its pair's count and takes its attempt back from the
    address's."""
    async with conn.transaction():
        await conn.execute(
            "DELETE FROM console_signin_throttle WHERE key = $1",
            f"user:{address} {_key(username)}",
        )
        await conn.execute(
            "UPDATE console_signin_throttle SET attempts = greatest(attempts - 1, 0)"
            " WHERE key = $1",
            f"addr:{address}",
        )


async def record(conn: asyncpg.Connection, username: str, address: str, outcome: Outcome) -> None:
    """Log a sign-in outcome (never the password); old events and stale counts are pruned."""
    await conn.execute(
        "INSERT INTO console_signin_events (username, address, outcome) VALUES ($1, $2, $3)",
        _key(username),
        address[:100],
        outcome,
    )
    await conn.execute(
        "DELETE FROM console_signin_events WHERE at < now() - make_interval(days => $1)",
        EVENTS_KEPT_DAYS,
    )
    await conn.execute(
        "DELETE FROM console_signin_throttle WHERE last_at < now() - make_interval(secs => $1)",
        float(IDLE_RESET_MINUTES * 60 + MAX_DELAY_SECONDS),
    )


async def events(conn: asyncpg.Connection, limit: int = 100) -> list[dict[str, Any]]:
    """The latest sign-in events, newest first (for the admin page)."""
    rows = await conn.fetch(
        "SELECT at, username, address, outcome FROM console_signin_events"
        " ORDER BY seq DESC LIMIT $1",
        limit,
    )
    return [dict(r) for r in rows]

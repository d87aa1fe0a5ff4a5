"""PostgreSQL unavailable: which errors mean it, and logging an outage once, not per request.

While PostgreSQL is down every request that needs it fails the same way; logging each one
(with its traceback) floods the log. :class:`Outage` keeps one pool's outage instead: a
warning naming the cause when the first request is refused, a reminder every
``REMINDER_SECONDS`` while it lasts (how long, how many requests refused), and a line when a
probe (``SELECT 1`` every ``PROBE_SECONDS``) finds PostgreSQL back. Nothing else is needed to
recover: the pool replaces connections PostgreSQL closed on their next acquire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import asyncpg
from asyncpg import exceptions as pg

log = logging.getLogger(__name__)

REMINDER_SECONDS = 60.0
PROBE_SECONDS = 1.0
PROBE_TIMEOUT = 2.0

_ASYNCPG_DIR = os.path.dirname(asyncpg.__file__) + os.sep

#: Errors PostgreSQL (or the way to it) raises when it cannot serve anyone: class 08
#: (connection exceptions, ConnectionDoesNotExistError included), shutting down or starting
#: up (57P01-57P03), too many connections (53300).
UNAVAILABLE: tuple[type[Exception], ...] = (
    pg.PostgresConnectionError,
    pg.CannotConnectNowError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.TooManyConnectionsError,
)

#: Every class an exception that :func:`is_unavailable` accepts belongs to (for handlers).
CANDIDATES: tuple[type[Exception], ...] = (
    *UNAVAILABLE,
    pg.InterfaceError,
    OSError,
    TimeoutError,
)


class DatabaseUnavailable(Exception):
    """PostgreSQL cannot be reached (raise it where code knows so itself)."""


def _through_asyncpg(exc: BaseException) -> bool:
    """Whether ``exc`` was raised in (or passed through) asyncpg's code."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.startswith(_ASYNCPG_DIR):
            return True
        tb = tb.tb_next
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means PostgreSQL is unavailable (not a bug nor a bad query): refused or
    reset connections, connection and acquire time-outs, server shutting down or starting,
    too many connections, a connection lost mid-query, a closed pool."""
    if isinstance(exc, (DatabaseUnavailable, *UNAVAILABLE)):
        return True
    if isinstance(exc, pg.InterfaceError):
        message = str(exc)
        return "closed" in message or "closing" in message
    if isinstance(exc, OSError | TimeoutError):
        return _through_asyncpg(exc)
    return False


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection in use was gone (PostgreSQL restarted, say): an
    idempotent read may be retried once on another connection."""
    if isinstance(exc, pg.ConnectionDoesNotExistError | pg.AdminShutdownError):
        return True
    if isinstance(exc, pg.InterfaceError):
        return "connection is closed" in str(exc)
    return isinstance(exc, ConnectionResetError | BrokenPipeError) and _through_asyncpg(exc)


def describe(exc: BaseException) -> str:
    """``TypeName: message`` (just the type name when the message is empty)."""
    message = str(exc).strip()
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


class Outage:
    """One pool's outage, as the requests refused while it lasts see it."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.since: float | None = None
        self.refused = 0
        self._reminded = 0.0
        self._watch: asyncio.Task[None] | None = None

    @property
    def down(self) -> bool:
        """Whether an outage is under way."""
        return self.since is not None

    def refuse(self, exc: BaseException) -> None:
        """Count a request refused because of ``exc``; the first of an outage logs it and
        starts probing for PostgreSQL's return."""
        self.refused += 1
        if self.since is not None:
            return
        self.since = self._reminded = time.monotonic()
        log.warning(
            "PostgreSQL unavailable (%s): requests that need it get 503 until it is back",
            describe(exc),
        )
        if self._watch is None or self._watch.done():
            self._watch = asyncio.get_running_loop().create_task(
                self._probe(), name="omnihub-db-outage"
            )

    def stop(self) -> None:
        """Stop probing (the pool is closing)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    async def _probe(self) -> None:
        while self.since is not None:
            await asyncio.sleep(PROBE_SECONDS)
            if self.pool.is_closing():
                return
            try:
                async with asyncio.timeout(PROBE_TIMEOUT):
                    await self.pool.fetchval("SELECT 1")
            except Exception as exc:
                if not is_unavailable(exc):
                    log.warning("PostgreSQL probe failed: %s", describe(exc))
                now = time.monotonic()
                if now - self._reminded >= REMINDER_SECONDS:
                    self._reminded = now
                    log.warning(
                        "PostgreSQL still unavailable after %.0f s (%s); %d requests refused",
                        now - self.since,
                        describe(exc),
                        self.refused,
                    )
                continue
            log.warning(
                "PostgreSQL is back after %.0f s; %d requests were refused meanwhile",
                time.monotonic() - self.since,
                self.refused,
            )
            self.since = None
            self.refused = 0


class QuietPoolFloor(logging.Filter):
    """asyncpg's pool logs a traceback each time it fails to reconnect up to ``min_size``
    (backing off to once a minute): while PostgreSQL is unavailable, one line without the
    traceback, at most once per ``REMINDER_SECONDS``."""

    def __init__(self) -> None:
        super().__init__()
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not is_unavailable(exc):
            return True
        now = time.monotonic()
        if self._last is not None and now - self._last < REMINDER_SECONDS:
            return False
        self._last = now
        record.msg = "PostgreSQL unavailable: the pool cannot reopen its minimum connections (%s)"
        record.args = (describe(exc),)
        record.exc_info = None
        record.exc_text = None
        return True


def quiet_asyncpg_pool() -> None:
    """Install :class:`QuietPoolFloor` on asyncpg's pool logger (once)."""
    logger = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, QuietPoolFloor) for f in logger.filters):
        logger.addFilter(QuietPoolFloor())

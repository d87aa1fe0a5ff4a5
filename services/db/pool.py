"""asyncpg pools with JSON codecs registered, bounded waits, and an outage to report to."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import asyncpg.pool

from services.db.outage import Outage, quiet_asyncpg_pool

#: Opening a connection gives up after this long (asyncpg's default is 60 s).
CONNECT_TIMEOUT = 5.0
#: ``pool.acquire()`` (waiting for a free connection, then opening it) gives up after this
#: long, raising TimeoutError, unless the caller passes its own ``timeout``.
ACQUIRE_TIMEOUT = 5.0


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class Pool(asyncpg.pool.Pool):  # type: ignore[misc]  # asyncpg is untyped
    """An asyncpg pool whose ``acquire`` waits at most ``acquire_timeout`` by default and
    whose :class:`~services.db.outage.Outage` the web process reports refused requests to."""

    def __init__(self, *args: Any, acquire_timeout: float | None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.acquire_timeout = acquire_timeout
        self.outage = Outage(self)

    def acquire(self, *, timeout: float | None = None) -> Any:
        """Acquire a connection (``async with`` or ``await``), ``acquire_timeout`` at most."""
        return super().acquire(timeout=self.acquire_timeout if timeout is None else timeout)

    async def close(self) -> None:
        """Stop probing an outage, then close gracefully."""
        self.outage.stop()
        await super().close()

    def terminate(self) -> None:
        """Stop probing an outage, then close at once."""
        self.outage.stop()
        super().terminate()


async def create_pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float | None = ACQUIRE_TIMEOUT,
) -> Pool:
    """Open a pool to ``url`` whose connections encode and decode json/jsonb."""
    quiet_asyncpg_pool()
    pool = Pool(
        url,
        min_size=min_size,
        max_size=max_size,
        max_queries=50_000,
        max_inactive_connection_lifetime=300.0,
        init=_init,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        acquire_timeout=acquire_timeout,
        timeout=CONNECT_TIMEOUT,
    )
    await pool
    return pool


async def migrated_pool(
    url: str,
    min_size: int = 1,
    max_size: int = 10,
    acquire_timeout: float | None = ACQUIRE_TIMEOUT,
) -> Pool:
    """Open a pool and bring the schema up to date first."""
    from services.db.migrate import migrate

    pool = await create_pool(url, min_size, max_size, acquire_timeout)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool

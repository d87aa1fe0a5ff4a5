"""asyncpg pools with JSON codecs registered."""

from __future__ import annotations

import json

import asyncpg


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def create_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool to ``url`` whose connections encode and decode json/jsonb."""
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init)
    assert pool is not None
    return pool


async def migrated_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """Open a pool and bring the schema up to date first."""
    from services.db.migrate import migrate

    pool = await create_pool(url, min_size, max_size)
    async with pool.acquire() as conn:
        await migrate(conn)
    return pool

"""The hub's :class:`~channels.base.SourceState`: source adapters' small durable state in
PostgreSQL (``source_state``), one row per adapter and key, so a poller resumes where it
stopped whichever process or machine runs it next."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from channels.base import StateValue


class PgSourceState:
    """One adapter's state in ``source_state``: ``save`` upserts and returns once committed.

    Values travel as JSON text (``$n::text::jsonb``, ``value::text``), so this works on any
    pool, with or without the JSON codecs ``services.db.pool`` registers."""

    def __init__(self, pool: asyncpg.Pool, adapter: str) -> None:
        if not adapter:
            raise ValueError("adapter must not be empty")
        self.pool = pool
        self.adapter = adapter

    async def load(self, key: str) -> dict[str, str | int | float | bool | None] | None:
        """The value last saved under ``key``, None if nothing was."""
        async with self.pool.acquire() as conn:
            text = await conn.fetchval(
                "SELECT value::text FROM source_state WHERE adapter = $1 AND key = $2",
                self.adapter,
                key,
            )
        if text is None:
            return None
        value: Any = json.loads(text)
        return dict(value)

    async def save(self, key: str, value: StateValue) -> None:
        """Replace the value under ``key`` (an autocommitted upsert: durable on return)."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                """INSERT INTO source_state (adapter, key, value, updated_at)
                   VALUES ($1, $2, $3::text::jsonb, now())
                   ON CONFLICT (adapter, key)
                   DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at""",
                self.adapter,
                key,
                json.dumps(dict(value), allow_nan=False),
            )

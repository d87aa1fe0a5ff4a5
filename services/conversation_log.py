"""The hub's :class:`~channels.base.conversation.ConversationLog` in PostgreSQL: a head row a
conversation holds its last number (its row lock orders concurrent appends), and the entries.
A retried append finds its entry by id and gets the same number."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from channels.base.conversation import Entry

_FOUND = (
    "SELECT seq FROM conversation_log WHERE adapter = $1 AND conversation = $2 AND entry_id = $3"
)
_NEXT = """
INSERT INTO conversation_heads (adapter, conversation, last_seq) VALUES ($1, $2, 1)
ON CONFLICT (adapter, conversation)
DO UPDATE SET last_seq = conversation_heads.last_seq + 1
RETURNING last_seq
"""
_ADD = """
INSERT INTO conversation_log (adapter, conversation, seq, entry_id, entry)
VALUES ($1, $2, $3, $4, $5::text::jsonb)
ON CONFLICT (adapter, conversation, entry_id) DO NOTHING
RETURNING seq
"""
_SINCE = """
SELECT seq, entry::text AS entry FROM conversation_log
WHERE adapter = $1 AND conversation = $2 AND seq > $3 ORDER BY seq LIMIT $4
"""


class PgConversationLog:
    """One adapter's conversations; ``pool`` is awaited on first use (a worker opens its pool
    lazily)."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]], adapter: str) -> None:
        if not adapter:
            raise ValueError("adapter must not be empty")
        self._pool = pool
        self.adapter = adapter

    async def append(self, conversation: str, entry_id: uuid.UUID, entry: Entry) -> int:
        """The entry's number (see ConversationLog.append)."""
        text = json.dumps(dict(entry), allow_nan=False)
        pool = await self._pool()
        async with pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(_FOUND, self.adapter, conversation, entry_id)
            if found is not None:
                return int(found)
            seq = await conn.fetchval(_NEXT, self.adapter, conversation)
            added = await conn.fetchval(_ADD, self.adapter, conversation, seq, entry_id, text)
            if added is None:  # the same entry, appended meanwhile: its number, not a new one
                added = await conn.fetchval(_FOUND, self.adapter, conversation, entry_id)
            return int(added)

    async def since(
        self, conversation: str, after: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Entries numbered above ``after``, in order."""
        pool = await self._pool()
        async with pool.acquire() as conn:
            rows = await conn.fetch(_SINCE, self.adapter, conversation, after, limit)
        return [(int(r["seq"]), json.loads(r["entry"])) for r in rows]


def log_on(pool: asyncpg.Pool, adapter: str) -> PgConversationLog:
    """The log of ``adapter`` on an open pool."""

    async def opened() -> asyncpg.Pool:
        return pool

    return PgConversationLog(opened, adapter)

"""The hub's :class:`~channels.base.conversation.ConversationLog` in PostgreSQL: a head row a
conversation holds its last number (its row lock orders concurrent appends, from any process),
and the entries. A retried append finds its entry by id and gets the same number.

Appends are written together: while one batch's transaction runs, the appends that arrive
wait and go in the next one (three statements a batch, whatever its size), so under load the
web process spends one round trip on many visitors' messages and an idle one answers at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from channels.base.conversation import Entry

#: Appends written in one transaction at most.
BATCH = 500

_FOUND = """
SELECT l.conversation, l.entry_id, l.seq
FROM conversation_log l
JOIN unnest($2::text[], $3::uuid[]) AS w(conversation, entry_id) USING (conversation, entry_id)
WHERE l.adapter = $1
"""
_BUMP = """
INSERT INTO conversation_heads (adapter, conversation, last_seq)
SELECT $1, conversation, n FROM unnest($2::text[], $3::bigint[]) AS b(conversation, n)
ON CONFLICT (adapter, conversation)
DO UPDATE SET last_seq = conversation_heads.last_seq + EXCLUDED.last_seq
RETURNING conversation, last_seq
"""
_ADD = """
INSERT INTO conversation_log (adapter, conversation, seq, entry_id, entry)
SELECT $1, conversation, seq, entry_id, entry::jsonb
FROM unnest($2::text[], $3::bigint[], $4::uuid[], $5::text[])
     AS a(conversation, seq, entry_id, entry)
ON CONFLICT (adapter, conversation, entry_id) DO NOTHING
RETURNING conversation, entry_id
"""
_SINCE = """
SELECT seq, entry::text AS entry FROM conversation_log
WHERE adapter = $1 AND conversation = $2 AND seq > $3 ORDER BY seq LIMIT $4
"""

Key = tuple[str, uuid.UUID]


class LogUnavailable(OSError):
    """The log could not be written or read (PostgreSQL unreachable or failing)."""


@dataclass
class _Append:
    conversation: str
    entry_id: uuid.UUID
    entry: str
    done: asyncio.Future[int] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class PgConversationLog:
    """One adapter's conversations; ``pool`` is awaited on first use (a worker opens its pool
    lazily)."""

    def __init__(self, pool: Callable[[], Awaitable[asyncpg.Pool]], adapter: str) -> None:
        if not adapter:
            raise ValueError("adapter must not be empty")
        self._pool = pool
        self.adapter = adapter
        self._waiting: list[_Append] = []
        self._writer: asyncio.Task[None] | None = None

    async def append(self, conversation: str, entry_id: uuid.UUID, entry: Entry) -> int:
        """The entry's number (see ConversationLog.append); LogUnavailable when it could not
        be written."""
        waiting = _Append(conversation, entry_id, json.dumps(dict(entry), allow_nan=False))
        self._waiting.append(waiting)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="conversation-log")
        return await waiting.done

    async def _write_all(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
            try:
                numbers = await self._write(batch)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                failure = LogUnavailable(f"conversation log: {type(exc).__name__}: {exc}")
                for waiting in batch:
                    if not waiting.done.done():
                        waiting.done.set_exception(failure)
                continue
            for waiting in batch:
                if not waiting.done.done():
                    waiting.done.set_result(numbers[(waiting.conversation, waiting.entry_id)])

    async def _write(self, batch: Sequence[_Append]) -> dict[Key, int]:
        """Number the batch's new entries (in arrival order within a conversation) in one
        transaction; an entry appended before keeps its number."""
        wanted = list(dict.fromkeys((a.conversation, a.entry_id) for a in batch))
        entries = {(a.conversation, a.entry_id): a.entry for a in batch}
        pool = await self._pool()
        async with pool.acquire() as conn, conn.transaction():
            numbers = await self._found(conn, wanted)
            new = [key for key in wanted if key not in numbers]
            if new:
                counts: dict[str, int] = {}
                for conversation, _ in new:
                    counts[conversation] = counts.get(conversation, 0) + 1
                locked = sorted(counts)  # heads locked in one order by every writer
                heads = {
                    r["conversation"]: int(r["last_seq"])
                    for r in await conn.fetch(
                        _BUMP, self.adapter, locked, [counts[c] for c in locked]
                    )
                }
                given: dict[Key, int] = {}
                for conversation, entry_id in new:
                    given[(conversation, entry_id)] = heads[conversation] - counts[conversation] + 1
                    counts[conversation] -= 1
                added = await conn.fetch(
                    _ADD,
                    self.adapter,
                    [c for c, _ in given],
                    list(given.values()),
                    [e for _, e in given],
                    [entries[key] for key in given],
                )
                kept = {(r["conversation"], r["entry_id"]) for r in added}
                numbers.update({key: n for key, n in given.items() if key in kept})
                # an entry another process appended meanwhile keeps the number it got there
                raced = [key for key in new if key not in kept]
                if raced:
                    numbers.update(await self._found(conn, raced))
        return numbers

    async def _found(self, conn: Any, keys: Sequence[Key]) -> dict[Key, int]:
        rows = await conn.fetch(_FOUND, self.adapter, [c for c, _ in keys], [e for _, e in keys])
        return {(r["conversation"], r["entry_id"]): int(r["seq"]) for r in rows}

    async def since(
        self, conversation: str, after: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """Entries numbered above ``after``, in order."""
        try:
            pool = await self._pool()
            async with pool.acquire() as conn:
                rows = await conn.fetch(_SINCE, self.adapter, conversation, after, limit)
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise LogUnavailable(f"conversation log: {type(exc).__name__}: {exc}") from exc
        return [(int(r["seq"]), json.loads(r["entry"])) for r in rows]


def log_on(pool: asyncpg.Pool, adapter: str) -> PgConversationLog:
    """The log of ``adapter`` on an open pool."""

    async def opened() -> asyncpg.Pool:
        return pool

    return PgConversationLog(opened, adapter)

"""The hub's SourceState in the real PostgreSQL: what a source saved is what it loads, across
new pools (a restarted process), one adapter's keys apart from another's."""

from __future__ import annotations

import asyncpg
import pytest

from channels.base import SourceState
from services.api.source_state import PgSourceState
from services.stack.embedded import Stack
from tests.support import unique


async def test_nothing_saved_loads_as_none(pool: asyncpg.Pool) -> None:
    assert await PgSourceState(pool, unique("adapter")).load("acct/INBOX") is None


async def test_a_value_round_trips_with_its_types_and_a_save_replaces_it(
    pool: asyncpg.Pool,
) -> None:
    state: SourceState = PgSourceState(pool, unique("adapter"))
    value = {"uidvalidity": 1796680055, "last_uid": 7, "ratio": 0.5, "ok": True, "note": None}
    await state.save("acct/INBOX", value)
    assert await state.load("acct/INBOX") == value
    await state.save("acct/INBOX", {"uidvalidity": 1, "last_uid": 9, "folder": "Réclamations"})
    assert await state.load("acct/INBOX") == {
        "uidvalidity": 1,
        "last_uid": 9,
        "folder": "Réclamations",
    }


async def test_keys_and_adapters_are_apart(pool: asyncpg.Pool) -> None:
    adapter = unique("adapter")
    email, other = PgSourceState(pool, adapter), PgSourceState(pool, unique("adapter"))
    await email.save("acct/INBOX", {"last_uid": 1})
    await email.save("acct/Sales", {"last_uid": 2})
    await other.save("acct/INBOX", {"last_uid": 3})
    assert await email.load("acct/INBOX") == {"last_uid": 1}
    assert await email.load("acct/Sales") == {"last_uid": 2}
    assert await other.load("acct/INBOX") == {"last_uid": 3}
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT key, updated_at FROM source_state WHERE adapter = $1 ORDER BY key", adapter
        )
    assert [r["key"] for r in rows] == ["acct/INBOX", "acct/Sales"]
    assert all(r["updated_at"] is not None for r in rows)


async def test_a_saved_value_is_there_for_a_new_process(pool: asyncpg.Pool, stack: Stack) -> None:
    adapter = unique("adapter")
    await PgSourceState(pool, adapter).save("acct/INBOX", {"uidvalidity": 5, "last_uid": 42})
    # a plain asyncpg pool, without the JSON codecs the hub's pools register
    fresh = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    try:
        assert await PgSourceState(fresh, adapter).load("acct/INBOX") == {
            "uidvalidity": 5,
            "last_uid": 42,
        }
        await PgSourceState(fresh, adapter).save("acct/INBOX", {"uidvalidity": 5, "last_uid": 43})
    finally:
        await fresh.close()
    assert await PgSourceState(pool, adapter).load("acct/INBOX") == {
        "uidvalidity": 5,
        "last_uid": 43,
    }


async def test_an_adapter_needs_a_name(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError):
        PgSourceState(pool, "")

"""Published marks land off the batches' path: after the acks, one at a time, never raising."""

from __future__ import annotations

import logging
import uuid

import asyncpg
import pytest

from services.db.pool import create_pool
from services.processors.route import PublishedMarks
from services.stack.embedded import Stack


async def _decisions(pool: asyncpg.Pool, count: int) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    await pool.execute(
        "INSERT INTO routing_decisions (event_id, customer_id, department, rule_id,"
        " ruleset_version, reason) SELECT e, gen_random_uuid(), 'sales', 'r', 'v', 'test'"
        " FROM unnest($1::uuid[]) AS e",
        ids,
    )
    return ids


async def _unpublished(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> int:
    return int(
        await pool.fetchval(
            "SELECT count(*) FROM routing_decisions"
            " WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL",
            ids,
        )
    )


async def test_each_mark_lands_before_the_next_starts(pool: asyncpg.Pool) -> None:
    """A second mark waits for the first; flushing waits for the last."""
    marks = PublishedMarks()
    first, second = await _decisions(pool, 3), await _decisions(pool, 2)
    await marks.add(pool, first)
    await marks.add(pool, second)  # returns only once the first has landed
    assert await _unpublished(pool, first) == 0
    await marks.flush()
    assert await _unpublished(pool, second) == 0
    await marks.flush()  # nothing pending: returns at once


async def test_a_failing_mark_is_logged_not_raised(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A mark that cannot land (the pool is gone) leaves the records to a replay."""
    broken = await create_pool(stack.database_url, max_size=1)
    await broken.close()
    marks = PublishedMarks()
    with caplog.at_level(logging.WARNING, logger="services.processors.route"):
        await marks.add(broken, [uuid.uuid4()])
        await marks.flush()
    assert "marking 1 routed events published failed" in caplog.text

"""Text arrays sent as literals come back from PostgreSQL as the same lists."""

from __future__ import annotations

import asyncpg
import pytest

from services.db.arrays import text_array_literal

AWKWARD = [
    [],
    ["sales"],
    ["after_sales", "finance"],
    ['say "hi"', "back\\slash", "a,b", "{braces}", " padded ", "NULL", "null", ""],
    ["Привет", "line\nbreak", "tab\there", '\\"', "\u2028"],
]


@pytest.mark.parametrize("values", AWKWARD, ids=range(len(AWKWARD)))
async def test_literal_parses_back_to_the_same_list(pool: asyncpg.Pool, values: list[str]) -> None:
    """PostgreSQL's own parser reads the literal as exactly ``values``, in order."""
    parsed = await pool.fetchval("SELECT $1::text::text[]", text_array_literal(values))
    assert parsed == values


async def test_a_batch_of_literals_is_cast_row_by_row(pool: asyncpg.Pool) -> None:
    """As the routing decisions' insert sends them: one literal a row in a text[] column."""
    rows = await pool.fetch(
        "SELECT u.v::text[] AS a FROM unnest($1::text[]) WITH ORDINALITY AS u(v, n) ORDER BY n",
        [text_array_literal(v) for v in AWKWARD],
    )
    assert [r["a"] for r in rows] == AWKWARD

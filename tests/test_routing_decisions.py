"""Routing decisions as the write step records them: every column from the primary routing."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from schemas import Department, Interaction, Routing, UnifiedEvent
from schemas.events import utcnow
from services.processors.route import encode, record_decisions
from services.routing.engine import Decision
from tests.support import phone, unique

AWKWARD = ['say "hi"', "back\\slash", "a,b", "{braces}", "NULL", "", "Привет", "line\nbreak"]


def unified() -> UnifiedEvent:
    """An inbound SMS attributed to a new customer id."""
    event = Interaction.create(
        channel="sms",
        direction="inbound",
        kind="message",
        identities=[{"type": "phone", "value": phone()}],
        provider_message_id=unique("SM"),
        text="hello",
    )
    return UnifiedEvent(
        event_id=event.event_id, customer_id=uuid.uuid4(), unified_at=utcnow(), interaction=event
    )


def routing(department: Department, **fields: object) -> Routing:
    return Routing.model_validate(
        {
            "department": department,
            "rule_id": "r1",
            "ruleset_version": "v 'quoted' 1",
            "reason": 'rule r1 (line 3): "refund"; <b>bold</b>',
            **fields,
        }
    )


async def record(
    pool: asyncpg.Pool, decided: list[tuple[UnifiedEvent, Decision]], encoded: bool = False
) -> set[uuid.UUID]:
    """Record ``decided``; ``encoded``: with the routings' JSON made by ``encode``, as the
    write step passes it."""
    routings = None
    if encoded:
        routings = {k: e.routing for k, e in encode(decided).items() if e.routing is not None}
    async with pool.acquire() as conn, conn.transaction():
        return await record_decisions(conn, decided, routings)


@pytest.mark.parametrize("encoded", [False, True], ids=["dumped-here", "from-encode"])
async def test_columns_come_from_the_primary_routing(pool: asyncpg.Pool, encoded: bool) -> None:
    """Department, copies, priority, tags, rule, version, reason, language and confidence land
    as the routing says; an event a rule ignores gets no row."""
    primary = routing(
        Department.FINANCE, priority="urgent", tags=AWKWARD, language="uk", confidence=0.8125
    )
    copies = tuple(
        primary.model_copy(update={"department": d, "copy_of": Department.FINANCE})
        for d in (Department.AFTER_SALES, Department.SALES)
    )
    full, bare, ignored = unified(), unified(), unified()
    decided = [
        (full, Decision(primary=primary, copies=copies, language="uk")),
        (bare, Decision(primary=routing(Department.SALES))),
        (ignored, Decision(primary=None)),
    ]
    assert await record(pool, decided, encoded) == {full.event_id, bare.event_id}
    rows = {
        r["event_id"]: r
        for r in await pool.fetch(
            "SELECT * FROM routing_decisions WHERE event_id = ANY($1::uuid[])",
            [full.event_id, bare.event_id, ignored.event_id],
        )
    }
    assert set(rows) == {full.event_id, bare.event_id}
    row = rows[full.event_id]
    assert row["customer_id"] == full.customer_id
    assert (row["department"], row["copies"]) == ("finance", ["after_sales", "sales"])
    assert (row["priority"], row["tags"], row["language"]) == ("urgent", AWKWARD, "uk")
    assert (row["rule_id"], row["ruleset_version"]) == ("r1", "v 'quoted' 1")
    assert row["reason"] == primary.reason
    assert row["confidence"] == 0.8125
    plain = rows[bare.event_id]
    assert (plain["copies"], plain["tags"], plain["priority"]) == ([], [], "normal")
    assert (plain["language"], plain["confidence"]) == (None, None)


async def test_a_replay_keeps_its_first_decision_and_is_pending_until_published(
    pool: asyncpg.Pool,
) -> None:
    """Recorded again, an event keeps its first decision; it is still to publish while it is
    not marked published, and no longer once it is."""
    event = unified()
    first = [(event, Decision(primary=routing(Department.SALES)))]
    again = [(event, Decision(primary=routing(Department.FINANCE)))]
    assert await record(pool, first) == {event.event_id}
    assert await record(pool, again) == {event.event_id}
    await pool.execute(
        "UPDATE routing_decisions SET published_at = now() WHERE event_id = $1", event.event_id
    )
    assert await record(pool, again) == set()
    department = await pool.fetchval(
        "SELECT department FROM routing_decisions WHERE event_id = $1", event.event_id
    )
    assert department == "sales"

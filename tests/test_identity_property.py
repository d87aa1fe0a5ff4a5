"""Property: any interleaving of events, links, merges and splits keeps the graph sound."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import Identity, Interaction, UnifiedEvent
from schemas.events import utcnow
from services.identity import manual
from services.identity.resolver import resolve
from services.identity.rules import IdentityRules
from services.processors.timeline import write_events
from tests.support import email, phone, unique

RULES = IdentityRules(shared_after=4, merge_cap=50)
POOL = 6  # identities per example

index = st.integers(min_value=0, max_value=POOL - 1)
operation = st.one_of(
    st.tuples(st.just("event"), st.lists(index, min_size=1, max_size=3, unique=True)),
    st.tuples(st.just("split"), index),
    st.tuples(st.just("link"), index, index),
    st.tuples(st.just("merge"), index, index),
)


def identities() -> list[Identity]:
    """Fresh identities for one example: emails, phones, a user id, a chat visitor."""
    return [
        Identity(type="email", value=email("p")),
        Identity(type="email", value=email("p")),
        Identity(type="phone", value=phone()),
        Identity(type="phone", value=phone()),
        Identity(type="user_id", value=unique("u")),
        Identity(type="webchat_visitor", value=unique("v")),
    ]


async def owner_of(conn: asyncpg.Connection, identity: Identity) -> uuid.UUID | None:
    return await conn.fetchval(
        "SELECT customer_id FROM identities WHERE (type, scope, value) = ($1, $2, $3)",
        identity.type.value,
        identity.scope,
        identity.value,
    )


async def run(url: str, ops: list[Any]) -> None:
    conn = await asyncpg.connect(url)
    pool = identities()
    events: list[uuid.UUID] = []
    try:
        for op in ops:
            kind = op[0]
            if kind == "event":
                interaction = Interaction.create(
                    channel="api",
                    direction="inbound",
                    kind="message",
                    text="x",
                    identities=[pool[i] for i in op[1]],
                    provider_message_id=unique("h"),
                )
                [customer] = (await resolve(conn, [interaction], RULES)).customers
                await write_events(
                    conn,
                    [
                        UnifiedEvent(
                            event_id=interaction.event_id,
                            customer_id=customer,
                            unified_at=utcnow(),
                            interaction=interaction,
                        )
                    ],
                )
                events.append(interaction.event_id)
                continue
            first = await owner_of(conn, pool[op[1]])
            if first is None:
                continue
            try:
                if kind == "split":
                    await manual.split(conn, first, [pool[op[1]]], "property", "test")
                elif kind == "link":
                    await manual.link(conn, first, pool[op[2]], "property", "test")
                else:
                    second = await owner_of(conn, pool[op[2]])
                    if second is not None:
                        await manual.merge(conn, first, second, "property", "test", RULES)
            except manual.ManualError:
                pass  # refusing an impossible request is allowed
        await check(conn, pool, events)
    finally:
        await conn.close()


async def check(conn: asyncpg.Connection, pool: list[Identity], events: list[uuid.UUID]) -> None:
    """Every event once, on a live customer; identities on live customers; log replays."""
    rows = await conn.fetch(
        "SELECT t.event_id, c.status FROM timeline t JOIN customers c ON c.id = t.customer_id"
        " WHERE t.event_id = ANY($1::uuid[])",
        events,
    )
    assert sorted(r["event_id"] for r in rows) == sorted(events)
    assert {r["status"] for r in rows} <= {"active"}
    for identity in pool:
        current = await conn.fetchrow(
            "SELECT i.customer_id, c.status FROM identities i JOIN customers c"
            " ON c.id = i.customer_id WHERE (i.type, i.scope, i.value) = ($1, $2, $3)",
            identity.type.value,
            identity.scope,
            identity.value,
        )
        if current is None:
            continue
        assert current["status"] == "active"
        replayed = await conn.fetchval(
            "SELECT customer_id FROM identity_link_log WHERE (type, scope, value) = ($1, $2, $3)"
            " AND decision = 'accepted' ORDER BY seq DESC LIMIT 1",
            identity.type.value,
            identity.scope,
            identity.value,
        )
        assert replayed == current["customer_id"], identity


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=st.lists(operation, min_size=1, max_size=14))
def test_any_interleaving_keeps_events_and_graph_consistent(stack: Any, ops: list[Any]) -> None:
    asyncio.run(run(stack.database_url, ops))

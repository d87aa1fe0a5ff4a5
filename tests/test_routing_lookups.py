"""What routing reads from PostgreSQL: consents withdrawn on any channel, profile fields."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from schemas import ConsentChange, Department, Purpose
from services.customers import consent
from services.routing import lookups
from services.routing.engine import Message, Router
from services.routing.loader import parse


async def test_withdrawal_on_one_channel_and_profile_fields_reach_the_rules(
    pool: asyncpg.Pool,
) -> None:
    withdrew, granted = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO customers (id, display_name) SELECT * FROM unnest($1::uuid[], $2::text[])",
            [withdrew, granted],
            ["Ada", "Bob"],
        )
        await conn.execute(
            "INSERT INTO customer_profiles (customer_id, language, attributes)"
            " VALUES ($1, 'fr', '{\"tier\": \"gold\"}'::jsonb)",
            withdrew,
        )
        change = ConsentChange(channel="sms", purpose=Purpose.MARKETING, granted=False)
        await consent.apply_changes(
            conn, [consent.ConsentWrite(withdrew, change, datetime.now(UTC))]
        )
        found = await lookups.load(conn, [withdrew, granted], with_profiles=True)
    assert found.withdrawn(withdrew) == frozenset({"marketing"})
    assert found.withdrawn(granted) == frozenset()
    profile = found.profile(withdrew)
    assert profile["display_name"] == "Ada" and profile["language"] == "fr"
    assert profile["attributes.tier"] == "gold" and profile["age_days"] == 0
    assert "attributes.tier" not in found.profile(granted)

    router = Router(
        parse(
            "rules:\n"
            "  - id: gold-newsletter\n"
            "    when:\n"
            "      all:\n"
            "        - field: customer.attributes.tier\n"
            "          equals: gold\n"
            "        - text: {any: [newsletter]}\n"
            "    then: {department: marketing}\n"
            "  - id: gold\n"
            "    when: {field: customer.attributes.tier, equals: gold}\n"
            "    then: {department: sales, priority: high}\n",
            "t.yaml",
        )
    )
    assert router.ruleset.needs_customer
    message = Message(channel="email", text="your newsletter")
    decision = router.route(message, found.profile(withdrew), found.withdrawn(withdrew))
    assert decision.primary.department is Department.SALES  # marketing passed over
    assert "gold-newsletter skipped" in decision.primary.reason

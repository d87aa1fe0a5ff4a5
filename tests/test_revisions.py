"""Edits and deletions (``Interaction.revises``) through the real pipeline: applied to the
original on the timeline (not added as messages), the earlier version kept apart and shown
to agents, a deleted text gone (admins see it only where the hub keeps it), a redelivered
revision changing nothing, a revision whose original is unknown kept as an event."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from tests.console_support import ConsoleHttp, make_user
from tests.support import eventually, phone, unique

pytestmark = pytest.mark.usefixtures("processors")


async def post(
    client: httpx.AsyncClient, tel: str, pid: str, text: str | None, **extra: Any
) -> str:
    answer = await client.post(
        "/v1/interactions",
        json={
            "channel": "sms",
            "identities": [{"type": "phone", "value": tel}],
            "provider_message_id": pid,
            **({"text": text} if text is not None else {}),
            **extra,
        },
    )
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["event_id"]
    return event_id


async def test_an_edit_and_a_deletion_apply_to_the_original(
    client: httpx.AsyncClient, pool: asyncpg.Pool, api_url: str
) -> None:
    tel = phone()
    first, second = unique("m"), unique("m")
    original = await post(client, tel, first, "Meet at 5pm at the shop")
    other = await post(client, tel, second, "Bring the invoice 7781")

    async def rows() -> Any:
        found = await pool.fetch(
            "SELECT event_id::text, body, interaction FROM timeline"
            " WHERE event_id = ANY($1::uuid[])",
            [original, other],
        )
        return found if len(found) == 2 else None

    await eventually(rows, timeout=30)
    edit = {"revises": {"of": first, "action": "edit"}}
    edit_id = unique("e")
    edited = await post(client, tel, edit_id, "Meet at 6pm at the shop", **edit)
    again = await post(client, tel, edit_id, "Meet at 6pm at the shop", **edit)  # redelivered
    assert again == edited
    deleted = await post(client, tel, unique("d"), None, revises={"of": second, "action": "delete"})
    orphan = await post(
        client, tel, unique("o"), "fixed typo", revises={"of": "never-seen", "action": "edit"}
    )

    async def applied() -> Any:
        kept = await pool.fetchval(
            "SELECT count(*) FROM timeline_revisions WHERE event_id = ANY($1::uuid[])",
            [original, other],
        )
        orphan_row = await pool.fetchval(
            "SELECT count(*) FROM timeline WHERE event_id = $1::uuid", orphan
        )
        return kept >= 2 and orphan_row == 1

    await eventually(applied, timeout=30)
    by_id = {r["event_id"]: r for r in await rows()}
    assert by_id[original]["body"] == "Meet at 6pm at the shop"
    assert by_id[original]["interaction"]["attributes"]["edited_at"]
    assert by_id[other]["body"] is None and by_id[other]["interaction"]["text"] is None
    assert by_id[other]["interaction"]["attributes"]["deleted_at"]
    # the revisions are not messages of their own
    extra = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])", [edited, deleted]
    )
    assert extra == 0
    earlier = await pool.fetch(
        "SELECT action, previous_text FROM timeline_revisions WHERE event_id = $1::uuid"
        " ORDER BY revised_at",
        original,
    )
    assert (
        [r["previous_text"] for r in earlier]
        == [
            "Meet at 5pm at the shop",
            "Meet at 6pm at the shop",  # the redelivered edit is its own event id: kept, same text
        ][: len(earlier)]
    )
    gone = await pool.fetchval(
        "SELECT previous_text FROM timeline_revisions WHERE event_id = $1::uuid", other
    )
    assert gone is None  # the hub does not keep deleted text by default

    customer = await pool.fetchval(
        "SELECT customer_id FROM timeline WHERE event_id = $1::uuid", original
    )
    agent = ConsoleHttp(api_url)
    try:
        await agent.sign_in((await make_user(pool, "admin")).username)
        page = (await agent.get(f"/console/customers/{customer}")).text
        assert "Meet at 6pm at the shop" in page and "Earlier versions" in page
        assert "Meet at 5pm at the shop" in page  # the earlier version, for agents
        assert "Deleted by the customer" in page and "Bring the invoice 7781" not in page
        feed = (await agent.get(f"/console/customers/{customer}/timeline.json")).json()
        items = {i["event_id"]: i for c in feed["conversations"] for i in c["items"]}
        assert items[original]["edited_at"] and items[other]["deleted_at"]
    finally:
        await agent.close()

"""Identity resolution end to end: HTTP API, real broker, real worker, customers topic."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx
import pytest

from schemas import CustomerEvent
from schemas.cloudevents import header_map
from schemas.sealing import KEY_ID_HEADER
from schemas.topics import CUSTOMERS
from services.api.auth import Role
from tests.support import email, eventually, opened_values, phone, read_all, unique

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
async def agent(api_url: str, tokens: dict[Role, str]) -> Any:
    """A client with an agent token (identity decisions are agents' work)."""
    headers = {"authorization": f"Bearer {tokens[Role.AGENT]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        yield http


async def post(client: httpx.AsyncClient, *identities: dict[str, str], **extra: Any) -> str:
    response = await client.post(
        "/v1/interactions",
        json={
            "identities": list(identities),
            "text": "hello",
            "provider_message_id": unique("i"),
            **extra,
        },
    )
    assert response.status_code == 202, response.text
    return response.json()["event_id"]


async def customer_by(client: httpx.AsyncClient, kind: str, value: str) -> Any:
    found = (await client.get("/v1/customers", params={"identity": f"{kind}:{value}"})).json()
    return found["customers"][0] if found["customers"] else None


async def test_merge_split_and_why_through_the_api(
    client: httpx.AsyncClient, agent: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    mail, tel = email("api"), phone()
    await post(client, {"type": "email", "value": mail})
    first = await eventually(lambda: customer_by(client, "email", mail))
    by_sms = await post(client, {"type": "phone", "value": tel}, channel="sms")
    second = await eventually(lambda: customer_by(client, "phone", tel))
    assert first["id"] != second["id"]
    bridge = await post(client, {"type": "phone", "value": tel}, {"type": "email", "value": mail})

    async def merged() -> Any:
        found = await customer_by(client, "phone", tel)
        return found if found and found["id"] == first["id"] else None

    await eventually(merged)
    alias = (await client.get(f"/v1/customers/{second['id']}")).json()
    assert alias["id"] == first["id"] and alias["requested_id"] == second["id"]

    async def merge_event() -> list[CustomerEvent]:
        return [
            e for e in await customer_events(stack, pool) if _uuid(second["id"]) in e.merged_ids
        ]

    [event] = await eventually(merge_event)
    merges = [
        r
        for r in await read_all(stack.bootstrap, CUSTOMERS.name)
        if header_map(r.headers)["ce_id"] == str(event.event_id)
    ]
    # sealed with the survivor's key: erasing it shreds the merge (and its reason) too
    assert [header_map(r.headers)[KEY_ID_HEADER] for r in merges]
    assert all(second["id"].encode() not in r.value for r in merges)
    assert event.type == "customer.merged" and str(event.customer_id) == first["id"]

    why = (
        await client.get(f"/v1/customers/{first['id']}/identities", params={"history": "true"})
    ).json()
    reasons = {i["value"]: i["why"] for i in why["identities"]}
    assert reasons[tel]["action"] == "merge"
    assert reasons[tel]["from_customer"] == second["id"]
    assert reasons[mail]["rule"] == "new_identity"
    assert any(h["action"] == "merge" for h in why["history"])

    refused = await client.post(
        f"/v1/customers/{first['id']}/split",
        json={"identities": [{"type": "phone", "value": tel}], "reason": "not the same person"},
    )
    assert refused.status_code == 403  # integrations may not; agents may
    response = await agent.post(
        f"/v1/customers/{first['id']}/split",
        json={"identities": [{"type": "phone", "value": tel}], "reason": "not the same person"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["new_ids"] == [second["id"]]
    back = await customer_by(client, "phone", tel)
    assert back["id"] == second["id"]
    timeline = (await client.get(f"/v1/customers/{second['id']}/timeline")).json()
    # events go back with their first identity: the SMS, and the bridge (phone first)
    assert {item["event_id"] for item in timeline["items"]} == {by_sms, bridge}

    async def split_event() -> list[CustomerEvent]:
        return [
            e
            for e in await customer_events(stack, pool)
            if e.type == "customer.split" and str(e.customer_id) == first["id"]
        ]

    [split] = await eventually(split_event)
    assert [i.value for i in split.identities] == [tel]


async def customer_events(stack: Any, pool: asyncpg.Pool) -> list[CustomerEvent]:
    """Every event on the customers topic, opened (sealed ones with their customer's key)."""
    records = await read_all(stack.bootstrap, CUSTOMERS.name)
    return [
        CustomerEvent.model_validate_json(value)
        for value in await opened_values(pool, records)
        if value is not None
    ]


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


async def test_manual_link_and_profile_through_the_api(
    client: httpx.AsyncClient, agent: httpx.AsyncClient
) -> None:
    mail = email("prof")
    await post(client, {"type": "email", "value": mail})
    found = await eventually(lambda: customer_by(client, "email", mail))
    tel = phone()
    linked = await agent.post(
        f"/v1/customers/{found['id']}/links",
        json={"identity": {"type": "phone", "value": tel}, "reason": "given at the counter"},
    )
    assert linked.status_code == 200, linked.text
    assert (await customer_by(client, "phone", tel))["id"] == found["id"]
    patched = await agent.patch(
        f"/v1/customers/{found['id']}/profile",
        json={
            "name": "<b>Zoé</b> Dupont",
            "language": "fr",
            "preferred_channel": "sms",
            "addresses": [{"lines": ["3 rue de la Paix"], "city": "Paris", "country": "FR"}],
        },
    )
    assert patched.status_code == 200, patched.text
    view = (await client.get(f"/v1/customers/{found['id']}")).json()
    assert view["profile"]["name"] == "<b>Zoé</b> Dupont"  # stored as text, as given
    assert view["profile"]["addresses"][0]["city"] == "Paris"
    bad = await agent.patch(f"/v1/customers/{found['id']}/profile", json={"shoe_size": 38})
    assert bad.status_code == 422
    unlinked = await agent.post(
        f"/v1/customers/{found['id']}/links",
        json={
            "action": "unlink",
            "identity": {"type": "phone", "value": tel},
            "reason": "typo by the agent",
        },
    )
    assert unlinked.status_code == 200
    assert (await customer_by(client, "phone", tel))["id"] != found["id"]


async def test_late_link_through_the_pipeline(client: httpx.AsyncClient) -> None:
    visitor, mail = unique("visitor"), email("late")
    await post(client, {"type": "email", "value": mail})
    known = await eventually(lambda: customer_by(client, "email", mail))
    chat = await post(client, {"type": "webchat_visitor", "value": visitor}, channel="webchat")
    await eventually(lambda: customer_by(client, "webchat_visitor", visitor))
    await post(
        client,
        {"type": "webchat_visitor", "value": visitor},
        {"type": "email", "value": mail},
        channel="webchat",
    )

    async def joined() -> Any:
        page = (await client.get(f"/v1/customers/{known['id']}/timeline")).json()
        return chat in {item["event_id"] for item in page["items"]}

    assert await eventually(joined)

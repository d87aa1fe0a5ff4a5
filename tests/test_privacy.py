"""Privacy through the API: export everything held about a customer; delete it (admins only),
with the reason logged without personal data and a tombstone on the customers topic."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from schemas import CustomerEvent, Interaction, Routing, UnifiedEvent
from schemas.cloudevents import header_map
from schemas.events import utcnow
from schemas.sealing import KEY_ID_HEADER, SCHEME_HEADER
from schemas.topics import ALL_TOPICS, CUSTOMERS, INTERACTIONS, ROUTED
from services.api.auth import Role
from services.privacy.erase import erase
from services.processors.route import record_decisions
from services.processors.timeline import insert_events
from services.routing.engine import Decision
from tests.channels.twilio import support as tw
from tests.support import consume, email, eventually, opened_values, read_all, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "twilio_api")

ROUTING = {"department": "sales", "rule_id": "r1", "ruleset_version": "1", "reason": "test"}


@pytest.fixture
async def as_role(api_url: str, tokens: dict[Role, str]) -> AsyncIterator[Any]:
    """Clients per token role."""
    opened: list[httpx.AsyncClient] = []

    def make(role: Role | None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {tokens[role]}"} if role else {}
        http = httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30)
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


async def rich_customer(
    client: httpx.AsyncClient, agent: httpx.AsyncClient, twilio_api: tw.FakeTwilio
) -> dict[str, Any]:
    """A customer with two identities, a profile, a consent, routed messages and a reply."""
    tel, mail = tw.new_phone(), email("priv")
    said = unique("My invoice is wrong, please call me")
    first = await client.post(
        "/v1/interactions",
        json={
            "channel": "sms",
            "identities": [{"type": "phone", "value": tel}, {"type": "email", "value": mail}],
            "text": said,
            "provider_message_id": unique("sms"),
            "consent": [{"channel": "email", "purpose": "marketing", "granted": False}],
        },
    )
    assert first.status_code == 202, first.text
    customer = await tw.customer_of(client, tel)
    await agent.patch(
        f"/v1/customers/{customer['id']}/profile",
        json={"name": "Ada Lovelace", "attributes": {"tier": "gold"}},
    )
    text = unique("We fixed the invoice")
    reply = await agent.post(
        f"/v1/customers/{customer['id']}/messages",
        json={"channel": "sms", "text": text, "to": {"type": "phone", "value": tel}},
    )
    command_id = reply.json()["command_id"]

    async def complete() -> Any:
        page = (await client.get(f"/v1/customers/{customer['id']}/timeline")).json()
        replies = [i for i in page["items"] if i.get("command_id") == command_id]
        return page if replies and replies[0]["delivery"]["state"] == "queued" else None

    await eventually(complete, timeout=30)
    return {
        "id": customer["id"],
        "phone": tel,
        "email": mail,
        "event_id": first.json()["event_id"],
        "command_id": command_id,
        "reply": text,
        "text": said,
    }


async def test_export_holds_everything_about_the_customer(
    as_role: Any, twilio_api: tw.FakeTwilio, pool: asyncpg.Pool
) -> None:
    client, agent = as_role(Role.INTEGRATION), as_role(Role.AGENT)
    held = await rich_customer(client, agent, twilio_api)

    async def routed() -> Any:
        return await pool.fetchval(
            "SELECT count(*) FROM routing_decisions WHERE event_id = $1::uuid", held["event_id"]
        )

    await eventually(routed)
    assert (await client.get(f"/v1/customers/{held['id']}/export")).status_code == 403
    assert (await as_role(None).get(f"/v1/customers/{held['id']}/export")).status_code == 401
    response = await agent.get(f"/v1/customers/{held['id']}/export")
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["customer"]["id"] == held["id"]
    assert {i["value"] for i in doc["identities"]} == {held["phone"], held["email"]}
    assert {r["value"] for r in doc["link_log"]} >= {held["phone"], held["email"]}
    assert doc["identity_edges"] and "identity_sightings" in doc
    assert doc["profile"][0]["name"] == "Ada Lovelace"
    assert doc["profile"][0]["attributes"] == {"tier": "gold"}
    assert [(c["channel"], c["purpose"], c["granted"]) for c in doc["consents"]] == [
        ("email", "marketing", False)
    ]
    events = {row["event_id"] for row in doc["timeline"]}
    assert held["event_id"] in events
    assert any(row["command_id"] == held["command_id"] for row in doc["timeline"])
    assert [s["state"] for s in doc["delivery_states"]] == ["queued"]
    assert [o["command_id"] for o in doc["outbound_messages"]] == [held["command_id"]]
    assert [r["event_id"] for r in doc["routing_decisions"]] == [held["event_id"]]
    assert "queue_items" in doc
    logged = await pool.fetch(
        "SELECT action, actor FROM privacy_log WHERE customer_id = $1::uuid", held["id"]
    )
    assert [(r["action"], r["actor"]) for r in logged] == [("export", "agent:test-agent")]
    unknown = await agent.get(f"/v1/customers/{uuid.uuid4()}/export")
    assert unknown.status_code == 404


async def test_delete_is_for_admins_needs_a_reason_and_publishes_a_tombstone(
    as_role: Any,
    twilio_api: tw.FakeTwilio,
    pool: asyncpg.Pool,
    stack: Any,
    tokens: dict[Role, str],
) -> None:
    client, agent, admin = as_role(Role.INTEGRATION), as_role(Role.AGENT), as_role(Role.ADMIN)
    held = await rich_customer(client, agent, twilio_api)
    url = f"/v1/customers/{held['id']}"
    assert (
        await as_role(None).request("DELETE", url, json={"reason": "x" * 10})
    ).status_code == 401
    for who in (client, agent):
        refused = await who.request("DELETE", url, json={"reason": "erasure request"})
        assert refused.status_code == 403
    assert (await admin.request("DELETE", url)).status_code == 422
    assert (await admin.request("DELETE", url, json={"reason": ""})).status_code == 422
    # the customer's records on the department topics are sealed with its key, readable by a
    # department holding keys:read until the erasure
    routed = [
        r
        for spec in ROUTED.values()
        for r in await read_all(stack.bootstrap, spec.name)
        if header_map(r.headers).get("ce_id") == held["event_id"]
    ]
    assert routed, "the customer's message was not routed"
    [key_id] = {header_map(r.headers)[KEY_ID_HEADER] for r in routed}
    department = as_role(None)
    department.headers["authorization"] = f"Bearer {tokens[Role.ADMIN]}"
    assert (await department.get(f"/v1/keys/{key_id}")).status_code == 200
    assert (await client.get(f"/v1/keys/{key_id}")).status_code == 403  # no keys:read
    for record, value in zip(routed, await opened_values(pool, routed), strict=True):
        assert value is not None and held["text"].encode() in value
        for personal in (held["text"].encode(), held["phone"].encode(), held["email"].encode()):
            assert personal not in record.value
    reason = f"GDPR erasure request from Ada Lovelace <{held['email']}> {held['phone']}"
    deleted = await admin.request("DELETE", url, json={"reason": reason})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["status"] == "deleted"

    assert (await client.get(url)).status_code == 404
    assert (await client.get(f"{url}/timeline")).status_code == 404
    for identity in (f"phone:{held['phone']}", f"email:{held['email']}"):
        found = (await client.get("/v1/customers", params={"identity": identity})).json()
        assert found["customers"] == []
    keys = [held["phone"], held["email"]]
    for table, column in (
        ("identities", "value"),
        ("identity_link_log", "value"),
        ("identity_sightings", "value"),
        ("identity_edges", "a_value"),
        ("identity_edges", "b_value"),
    ):
        left = await pool.fetchval(f"SELECT count(*) FROM {table} WHERE {column} = ANY($1)", keys)
        assert left == 0, table
    for table in ("timeline", "customer_profiles", "consents", "routing_decisions"):
        left = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE customer_id = $1::uuid", held["id"]
        )
        assert left == 0, table
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM delivery_states WHERE command_id = $1::uuid", held["command_id"]
        )
        == 0
    )
    status = await pool.fetchval("SELECT status FROM customers WHERE id = $1::uuid", held["id"])
    assert status == "deleted"
    # its key is gone: every copy of its department records, wherever kept, is unreadable
    assert (await department.get(f"/v1/keys/{key_id}")).status_code == 404
    assert await opened_values(pool, routed) == [None] * len(routed)
    assert await pool.fetchval("SELECT count(*) FROM customer_keys WHERE key_id = $1", key_id) == 0
    # its raw interactions are sealed with their day's period key (deleted after
    # OMNIHUB_RAW_RECORD_DAYS, tests/test_period_keys.py) and keyed by a bucket: nothing readable
    raw = [
        r
        for r in await read_all(stack.bootstrap, INTERACTIONS.name)
        if header_map(r.headers).get("ce_id") == held["event_id"]
    ]
    assert raw, "the customer's message is not on the interactions topic"
    for record in raw:
        assert header_map(record.headers)[SCHEME_HEADER] == "period"
        for personal in (held["text"].encode(), held["phone"].encode(), held["email"].encode()):
            assert personal not in (record.key or b"") + record.value
    [entry] = await pool.fetch(
        "SELECT * FROM privacy_log WHERE customer_id = $1::uuid AND action = 'delete'", held["id"]
    )
    assert entry["actor"] == "admin:test-admin"
    assert entry["reason"].startswith("GDPR erasure request from [redacted]")
    for personal in ("Ada", "Lovelace", held["email"], held["phone"]):
        assert personal not in entry["reason"]

    records = await consume(
        stack.bootstrap,
        CUSTOMERS.name,
        lambda rs: any(r.key == held["id"].encode() and b"customer.deleted" in r.value for r in rs),
    )
    [tombstone] = [
        CustomerEvent.model_validate_json(r.value)
        for r in records
        if r.key == held["id"].encode() and b"customer.deleted" in r.value
    ]
    assert tombstone.type == "customer.deleted" and str(tombstone.customer_id) == held["id"]
    assert held["email"] not in tombstone.model_dump_json()
    headers = dict(next(r for r in records if r.key == held["id"].encode()).headers)
    assert json.loads(json.dumps(headers["ce_type"].decode())) == CUSTOMERS.ce_type
    # every department hears of it on its own topic, the same event keyed by the customer
    for department, spec in ROUTED.items():
        routed = await consume(
            stack.bootstrap,
            spec.name,
            lambda rs: any(
                r.key == held["id"].encode() and b"customer.deleted" in r.value for r in rs
            ),
        )
        [notice] = [
            r for r in routed if r.key == held["id"].encode() and b"customer.deleted" in r.value
        ]
        assert CustomerEvent.model_validate_json(notice.value) == tombstone, department
        assert dict(notice.headers)["ce_type"].decode() == CUSTOMERS.ce_type

    # every topic the hub owns, walked record by record: nothing about the customer readable
    # (the text and reply are unique to this customer; the name is the profile's)
    personal = [held["phone"], held["email"], held["text"], held["reply"], "Ada Lovelace"]
    for spec in ALL_TOPICS:
        for record in await read_all(stack.bootstrap, spec.name):
            raw = b"".join(
                [record.key or b"", record.value or b"", *(v for _, v in record.headers)]
            )
            found = [p for p in personal if p.encode() in raw]
            assert not found, (spec.name, record.offset, found)

    # a retry (say the first tombstone's ack was lost) publishes the tombstone again
    again = await admin.request("DELETE", url, json={"reason": "retry"})
    assert again.status_code == 200
    missing = await admin.request(
        "DELETE", f"/v1/customers/{uuid.uuid4()}", json={"reason": "x" * 5}
    )
    assert missing.status_code == 404


async def emailing_customer(client: httpx.AsyncClient, mail: str) -> uuid.UUID:
    """The id of a customer made by one message from ``mail``, once it is resolved."""
    await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": mail}],
            "text": "first",
            "provider_message_id": unique("first"),
        },
    )

    async def known() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{mail}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    return uuid.UUID(await eventually(known))


def in_flight(
    customer_id: uuid.UUID, mail: str, text: str
) -> tuple[UnifiedEvent, list[tuple[UnifiedEvent, Decision]]]:
    """An event of the customer's as a processors batch holds it, and its routing decision."""
    late = Interaction.create(
        channel="api",
        direction="inbound",
        kind="message",
        identities=[{"type": "email", "value": mail}],
        provider_message_id=unique("late"),
        text=text,
    )
    event = UnifiedEvent(
        event_id=late.event_id, customer_id=customer_id, unified_at=utcnow(), interaction=late
    )
    return event, [(event, Decision(primary=Routing.model_validate(ROUTING)))]


async def test_events_in_flight_do_not_resurrect_a_deleted_timeline(
    as_role: Any, pool: asyncpg.Pool
) -> None:
    client, admin = as_role(Role.INTEGRATION), as_role(Role.ADMIN)
    mail = email("late")
    customer_id = await emailing_customer(client, mail)
    deleted = await admin.request(
        "DELETE", f"/v1/customers/{customer_id}", json={"reason": "erasure request"}
    )
    assert deleted.status_code == 200
    event, decided = in_flight(customer_id, mail, "unified before the erasure, written after it")
    async with pool.acquire() as conn:  # what the processors' write step does with it
        async with conn.transaction():
            to_publish = await record_decisions(conn, decided)
            written = await insert_events(conn, [event])
        assert (to_publish, written) == (set(), 0)
        # any other writer: the statement triggers take the rows out again
        await conn.execute(
            "INSERT INTO timeline (event_id, customer_id, occurred_at, received_at, channel,"
            " direction, kind, provider_message_id, interaction)"
            " VALUES ($1, $2::uuid, now(), now(), 'api', 'inbound', 'message', 'late', '{}')",
            uuid.uuid4(),
            customer_id,
        )
        await conn.execute(
            "INSERT INTO routing_decisions (event_id, customer_id, department, rule_id,"
            " ruleset_version, reason) VALUES ($1, $2::uuid, 'sales', 'r', 'v', 'x')",
            uuid.uuid4(),
            customer_id,
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM timeline WHERE customer_id = $1::uuid", customer_id
        )
        decisions = await conn.fetchval(
            "SELECT count(*) FROM routing_decisions WHERE customer_id = $1::uuid", customer_id
        )
    assert (left, decisions) == (0, 0)


async def test_an_erasure_waits_for_a_batch_writing_the_customers_decisions(
    as_role: Any, pool: asyncpg.Pool
) -> None:
    """A batch that recorded a decision before the erasure began: the erasure waits for it to
    commit and then deletes the decision (it once survived, unseen by the erasure's DELETE)."""
    client = as_role(Role.INTEGRATION)
    mail = email("racing")
    customer_id = await emailing_customer(client, mail)
    event, decided = in_flight(customer_id, mail, "routed while the erasure starts")
    async with pool.acquire() as writer, pool.acquire() as admin:
        batch = writer.transaction()
        await batch.start()
        assert await record_decisions(writer, decided) == {event.event_id}
        erasing = asyncio.create_task(erase(admin, customer_id, "erasure request", "admin:t"))
        await asyncio.sleep(1)
        assert not erasing.done()  # it waits for the batch's lock on the customer
        await batch.commit()
        await erasing
    left = await pool.fetchval(
        "SELECT count(*) FROM routing_decisions WHERE customer_id = $1", customer_id
    )
    assert left == 0

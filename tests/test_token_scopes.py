"""Scoped tokens (issue #28): every /v1 route and channel CLIENT route needs one scope; an
integration's message ids are its own (deduplication per caller) and it posts only as the
channels it was granted."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi.routing import APIRoute

from channels.api import ApiAdapter
from channels.api.adapter import INTERACTIONS
from channels.api.parse import parse_body
from channels.base import InboundRequest, WebhookReply, receive
from channels.base.adapter import Caller
from channels.base.webhook import NotAllowed
from schemas import Interaction
from schemas.ids import client_event_id_for, event_id_for
from services.api import customers, identity, keys, privacy
from services.api.auth import ALL_CHANNELS, ROLE_SCOPES, Role, Scope, create_token, hash_token
from tests.support import ROOT, eventually, unique

CUSTOMER = "00000000-0000-4000-8000-00000000c0de"  # no such customer: 404 once authorized
EVENT = "00000000-0000-4000-8000-0000000e0e47"  # nor event

#: (method, path, the scope it needs, a body); every /v1 route and the API channel's route.
MATRIX: list[tuple[str, str, Scope, Any]] = [
    ("GET", "/v1/customers?identity=email:nobody@example.com", Scope.CUSTOMERS_READ, None),
    ("GET", f"/v1/customers/{CUSTOMER}", Scope.CUSTOMERS_READ, None),
    ("GET", f"/v1/customers/{CUSTOMER}/timeline", Scope.CUSTOMERS_READ, None),
    (
        "GET",
        f"/v1/customers/{CUSTOMER}/interactions/{EVENT}/files/1",
        Scope.CUSTOMERS_READ,
        None,
    ),
    ("GET", f"/v1/customers/{CUSTOMER}/identities", Scope.CUSTOMERS_READ, None),
    (
        "POST",
        f"/v1/customers/{CUSTOMER}/messages",
        Scope.MESSAGES_SEND,
        {"channel": "api", "text": "hello"},
    ),
    (
        "POST",
        f"/v1/customers/{CUSTOMER}/split",
        Scope.IDENTITY_WRITE,
        {"identities": [{"type": "email", "value": "a@example.com"}], "reason": "not them"},
    ),
    (
        "POST",
        f"/v1/customers/{CUSTOMER}/links",
        Scope.IDENTITY_WRITE,
        {"identity": {"type": "email", "value": "a@example.com"}, "reason": "theirs"},
    ),
    (
        "POST",
        f"/v1/customers/{CUSTOMER}/merge",
        Scope.IDENTITY_WRITE,
        {"other": str(uuid.uuid4()), "reason": "same person"},
    ),
    ("PATCH", f"/v1/customers/{CUSTOMER}/profile", Scope.IDENTITY_WRITE, {"name": "Ada"}),
    ("GET", f"/v1/customers/{CUSTOMER}/export", Scope.PRIVACY_EXPORT, None),
    ("DELETE", f"/v1/customers/{CUSTOMER}", Scope.PRIVACY_DELETE, {"reason": "erasure"}),
    ("POST", "/v1/interactions", Scope.INTERACTIONS_WRITE, "interaction"),
    ("GET", f"/v1/keys/{CUSTOMER}", Scope.KEYS_READ, None),  # any uuid as the key id
]
#: Scopes made after migration 0012 (which gave existing tokens their former rights).
LATER_SCOPES = {Scope.KEYS_READ}


def interaction(provider_id: str | None = None, **overrides: Any) -> dict[str, Any]:
    """A minimal POST /v1/interactions body with a fresh identity."""
    payload: dict[str, Any] = {
        "identities": [{"type": "email", "value": f"{unique('scoped')}@example.com"}],
        "text": "hello",
        "provider_message_id": provider_id or unique("pid"),
    }
    payload.update(overrides)
    return payload


def caller(*channels: str) -> Caller:
    return Caller(str(uuid.uuid4()), "test", frozenset(channels or ("api",)))


# --- no servers: the contract, the adapter, the ids ---------------------------------------


def test_the_matrix_covers_every_v1_route_and_client_route() -> None:
    declared = {
        (method, route.path)
        for router in (customers.router, identity.router, privacy.router, keys.router)
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    }
    declared |= {(m, INTERACTIONS.path) for m in INTERACTIONS.methods}
    covered = {
        (
            method,
            path.split("?")[0]
            .replace(CUSTOMER, "{customer_id}")
            .replace(EVENT, "{event_id}")
            .replace("/files/1", "/files/{index}")
            .replace("keys/{customer_id}", "keys/{key_id}"),
        )
        for method, path, _, _ in MATRIX
    }
    assert covered == declared
    assert INTERACTIONS.scopes == (Scope.INTERACTIONS_WRITE.value,)


def test_client_event_ids_are_scoped_to_the_caller() -> None:
    one, other = caller(), caller()
    raw = _json(interaction("crm-1"))
    now = datetime.now(UTC)
    first = parse_body(raw, now, caller=one)
    retry = parse_body(raw, now, caller=one)
    theirs = parse_body(raw, now, caller=other)
    assert first.event_id == retry.event_id == client_event_id_for(one.id, "api", "crm-1")
    assert first.event_id != theirs.event_id
    assert first.event_id != event_id_for("api", "crm-1")
    # a client's "sms" id never takes the id Twilio's adapter gives the real message
    sms_body = _json(interaction("SM123", channel="sms"))
    sms = parse_body(sms_body, now, caller=caller("api", "sms"))
    assert sms.event_id != event_id_for("sms", "SM123")
    # the documented provider ids are unchanged
    assert Interaction.create(
        channel="sms",
        direction="inbound",
        kind="message",
        identities=sms.identities,
        provider_message_id="SM123",
        received_at=now,
    ).event_id == event_id_for("sms", "SM123")


def test_a_channel_not_granted_is_refused_naming_it() -> None:
    raw = _json(interaction(channel="sms"))
    with pytest.raises(NotAllowed, match="'sms'"):
        parse_body(raw, datetime.now(UTC), caller=caller("api"))


async def test_receive_answers_403_for_a_refused_caller() -> None:
    adapter = ApiAdapter()

    class Nothing:
        async def publish(self, events: Any) -> None:
            raise AssertionError("nothing may be published")

        async def dead_letter(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("nothing may be dead-lettered")

    url = "http://hub/v1/interactions"
    headers = {"content-type": "application/json"}
    sms = InboundRequest("POST", url, headers, _json(interaction(channel="sms")), caller=caller())
    anonymous = InboundRequest("POST", url, headers, _json(interaction()))
    for request in (sms, anonymous):
        reply = await receive(adapter, Nothing(), request, INTERACTIONS)  # type: ignore[arg-type]
        assert isinstance(reply, WebhookReply)
        assert reply.status == 403, reply.body


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# --- against the session's database and API process ---------------------------------------


async def test_migration_gives_existing_tokens_their_former_rights(pool: asyncpg.Pool) -> None:
    sql = (ROOT / "services/db/migrations/0012_token_scopes.sql").read_text()
    async with pool.acquire() as conn:
        undo = conn.transaction()
        await undo.start()
        # the table as it was before the migration, shadowing the real one in this transaction
        await conn.execute(
            "CREATE TEMP TABLE api_tokens (id uuid PRIMARY KEY, token_hash text NOT NULL,"
            " role text NOT NULL, name text NOT NULL DEFAULT '',"
            " created_at timestamptz NOT NULL DEFAULT now(), revoked_at timestamptz)"
            " ON COMMIT DROP"
        )
        for role in Role:
            await conn.execute(
                "INSERT INTO pg_temp.api_tokens (id, token_hash, role) VALUES ($1, $2, $3)",
                uuid.uuid4(),
                unique("hash"),
                role.value,
            )
        try:
            await conn.execute(sql)
            rows = await conn.fetch("SELECT role, scopes, channels FROM pg_temp.api_tokens")
        finally:
            await undo.rollback()
    assert len(rows) == len(Role)
    for row in rows:
        former = ROLE_SCOPES[Role(row["role"])] - LATER_SCOPES
        assert set(row["scopes"]) == {s.value for s in former}
        assert set(row["channels"]) == ALL_CHANNELS


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as client:
        yield client


async def token(pool: asyncpg.Pool, *scopes: Scope, channels: tuple[str, ...] = ("api",)) -> str:
    async with pool.acquire() as conn:
        return await create_token(conn, Role.INTEGRATION, unique("scoped"), scopes, channels)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


async def call(http: httpx.AsyncClient, value: str, method: str, path: str, body: Any) -> Any:
    json_body = interaction() if body == "interaction" else body
    return await http.request(method, path, json=json_body, headers=bearer(value))


async def test_a_token_needs_the_route_scope_and_no_other(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    for method, path, scope, body in MATRIX:
        lacking = await token(pool, *(set(Scope) - {scope}))
        refused = await call(http, lacking, method, path, body)
        assert refused.status_code == 403, (method, path, refused.text)
        assert scope.value in refused.json()["detail"], refused.text
        holding = await token(pool, scope)
        answered = await call(http, holding, method, path, body)
        assert answered.status_code not in (401, 403), (method, path, answered.text)


@pytest.mark.usefixtures("processors")
async def test_two_integrations_may_use_the_same_message_id(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    erp, shop = await token(pool, *Scope), await token(pool, *Scope)
    provider_id = unique("order")
    ours, theirs = interaction(provider_id), interaction(provider_id)
    first = await http.post("/v1/interactions", json=ours, headers=bearer(erp))
    retry = await http.post("/v1/interactions", json=ours, headers=bearer(erp))
    other = await http.post("/v1/interactions", json=theirs, headers=bearer(shop))
    assert first.status_code == retry.status_code == other.status_code == 202, other.text
    assert first.json()["event_id"] == retry.json()["event_id"]
    assert first.json()["event_id"] != other.json()["event_id"]
    erp_id = await pool.fetchval("SELECT id FROM api_tokens WHERE token_hash = $1", hash_token(erp))
    assert first.json()["event_id"] == str(client_event_id_for(str(erp_id), "api", provider_id))

    async def both_on_a_timeline() -> bool:
        events = [uuid.UUID(r.json()["event_id"]) for r in (first, other)]
        found = await pool.fetchval(
            "SELECT count(DISTINCT event_id) FROM timeline WHERE event_id = ANY($1::uuid[])",
            events,
        )
        return bool(found == 2)

    assert await eventually(both_on_a_timeline, timeout=30)


async def test_an_integration_posts_only_as_its_channels(
    http: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    sid = f"SM{uuid.uuid4().hex}"
    api_only = await token(pool, Scope.INTERACTIONS_WRITE)
    refused = await http.post(
        "/v1/interactions", json=interaction(sid, channel="sms"), headers=bearer(api_only)
    )
    assert refused.status_code == 403, refused.text
    assert "sms" in refused.json()["detail"]
    granted = await token(pool, Scope.INTERACTIONS_WRITE, channels=("api", "sms"))
    posted = await http.post(
        "/v1/interactions", json=interaction(sid, channel="sms"), headers=bearer(granted)
    )
    assert posted.status_code == 202, posted.text
    # the genuine SMS with that sid keeps its own event id
    assert posted.json()["event_id"] != str(event_id_for("sms", sid))


async def test_no_token_speaks_for_a_customer_on_their_own_pages(
    http: httpx.AsyncClient, pool: asyncpg.Pool, tokens: dict[Role, str]
) -> None:
    """Only the hub's self-service pages write channel self_service: not even an admin's token
    may post as it (it would put words in the customer's mouth), and none can be granted it."""
    posted = await http.post(
        "/v1/interactions",
        json=interaction(f"SS{uuid.uuid4().hex}", channel="self_service"),
        headers=bearer(tokens[Role.ADMIN]),
    )
    assert posted.status_code == 403, posted.text
    with pytest.raises(ValueError, match="self_service"):
        await token(pool, Scope.INTERACTIONS_WRITE, channels=("api", "self_service"))

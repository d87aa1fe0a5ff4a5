"""The HTTP API against a real API process, real Tansu, real PostgreSQL and a real worker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from schemas import Interaction
from schemas.cloudevents import header_map
from schemas.events import utcnow
from schemas.ids import client_event_id_for, identity_bucket
from schemas.sealing import (
    KEY_ID_HEADER,
    SCHEME_HEADER,
    SEALED_CONTENT_TYPE,
    SEALED_TYPE_HEADER,
    period_of,
)
from schemas.topics import INTERACTIONS
from services.api.auth import Role, hash_token
from tests.support import consume, eventually, opened_values, unique

pytestmark = pytest.mark.usefixtures("processors")


def body(**overrides: Any) -> dict[str, Any]:
    """A minimal interaction body with a fresh identity and provider id."""
    payload: dict[str, Any] = {
        "channel": "api",
        "direction": "inbound",
        "kind": "message",
        "identities": [{"type": "email", "value": f"{unique('Alice')}@Example.com"}],
        "text": "Hello, I would like a quote for 40 chairs.",
        "provider_message_id": unique("crm"),
    }
    payload.update(overrides)
    return payload


async def event_id_of(pool: asyncpg.Pool, token: str, provider_message_id: str) -> uuid.UUID:
    """The event id an interaction posted with ``token`` gets: scoped to that token."""
    token_id = await pool.fetchval(
        "SELECT id FROM api_tokens WHERE token_hash = $1", hash_token(token)
    )
    return client_event_id_for(str(token_id), "api", provider_message_id)


async def customer_of(client: httpx.AsyncClient, identity: str) -> dict[str, Any] | None:
    """The customer found by ``identity``, or None yet."""
    response = await client.get("/v1/customers", params={"identity": identity})
    response.raise_for_status()
    customers = response.json()["customers"]
    return customers[0] if customers else None


async def timeline(client: httpx.AsyncClient, customer_id: str, **params: Any) -> dict[str, Any]:
    """One timeline page."""
    response = await client.get(f"/v1/customers/{customer_id}/timeline", params=params)
    response.raise_for_status()
    return response.json()


async def test_posted_interaction_reaches_the_timeline(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tokens: dict[Role, str]
) -> None:
    payload = body(
        subject="Quote",
        occurred_at="2026-11-20T09:30:00+01:00",
        thread={"id": "case-7"},
        attributes={"erp_order": 991},
        attachments=[{"name": "plan.pdf", "content_type": "application/pdf"}],
    )
    started = time.monotonic()
    response = await client.post("/v1/interactions", json=payload)
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    expected = await event_id_of(pool, tokens[Role.INTEGRATION], payload["provider_message_id"])
    assert event_id == str(expected)

    email = payload["identities"][0]["value"].lower()
    found = await eventually(lambda: customer_of(client, f"email:{email}"))
    page = await eventually(lambda: _nonempty(timeline(client, found["id"])))
    elapsed = time.monotonic() - started
    [item] = page["items"]
    assert item["event_id"] == event_id
    assert item["text"] == payload["text"]
    assert item["subject"] == "Quote"
    assert item["thread_id"] == "case-7"
    assert item["occurred_at"].startswith("2026-11-20T08:30:00")
    assert item["attachments"][0]["name"] == "plan.pdf"
    assert found["identities"][0]["value"] == email
    print(f"POST -> timeline visible in {elapsed:.3f}s")


async def _nonempty(page: Any) -> dict[str, Any] | None:
    result = await page
    return result if result["items"] else None


async def test_same_interaction_twice_gives_one_row(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tokens: dict[Role, str]
) -> None:
    payload = body()
    first = await client.post("/v1/interactions", json=payload)
    second = await client.post("/v1/interactions", json=payload)
    assert first.status_code == second.status_code == 202
    assert first.json()["event_id"] == second.json()["event_id"]
    event_id = first.json()["event_id"]
    await eventually(
        lambda: pool.fetchval("SELECT 1 FROM timeline WHERE event_id = $1", _uuid(event_id))
    )
    # Give the second copy every chance to be projected too, then count.
    later = body()
    await client.post("/v1/interactions", json=later)
    later_id = await event_id_of(pool, tokens[Role.INTEGRATION], later["provider_message_id"])
    await eventually(lambda: pool.fetchval("SELECT 1 FROM timeline WHERE event_id = $1", later_id))
    count = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE event_id = $1", _uuid(event_id)
    )
    assert count == 1


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


async def test_records_carry_cloudevents_headers_and_a_sealed_value(
    client: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    payload = body()
    response = await client.post("/v1/interactions", json=payload)
    event_id = response.json()["event_id"]
    records = await consume(
        stack.bootstrap,
        INTERACTIONS.name,
        lambda rs: any(header_map(r.headers).get("ce_id") == event_id for r in rs),
    )
    record = next(r for r in records if header_map(r.headers).get("ce_id") == event_id)
    headers = header_map(record.headers)
    assert headers["ce_type"] == "com.omnihub.interaction.v1"
    assert headers["ce_source"] == "channels/api"
    assert headers["ce_specversion"] == "1.0"
    # the raw record names nobody: sealed with the day's period key, keyed by a bucket
    assert headers["content-type"] == SEALED_CONTENT_TYPE
    assert headers[SEALED_TYPE_HEADER] == "application/json"
    assert (headers[SCHEME_HEADER], headers[KEY_ID_HEADER]) == ("period", period_of(utcnow()))
    email = payload["identities"][0]["value"].lower()
    assert record.key == identity_bucket(f"email::{email}")
    assert email.encode() not in record.key + record.value
    assert payload["text"].encode() not in record.value
    [opened] = await opened_values(pool, [record])
    assert opened is not None
    assert Interaction.model_validate_json(opened).text == payload["text"]


async def test_malformed_body_names_the_field(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/interactions",
        json=body(identities=[{"type": "email", "value": "nobody-at-example"}], kind="telepathy"),
    )
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["detail"]}
    assert fields == {"kind", "identities.0"}


async def test_unknown_channel_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/interactions", json=body(channel="fax"))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "channel"


async def test_missing_fields_and_unknown_fields_are_named(client: httpx.AsyncClient) -> None:
    payload = body(favourite_colour="blue")
    del payload["identities"]
    response = await client.post("/v1/interactions", json=payload)
    assert response.status_code == 422
    fields = {d["field"] for d in response.json()["detail"]}
    assert fields == {"identities", "favourite_colour"}


WITHDRAWN = {"channel": "email", "purpose": "marketing", "granted": False}
NUL_FIELDS = {
    "text": ({"text": "Hello\u0000"}, "text"),
    "subject": ({"subject": "Quo\u0000te"}, "subject"),
    "attribute": ({"attributes": {"erp_order": "99\u00001"}}, "attributes.erp_order"),
    "attribute-key": ({"attributes": {"erp\u0000order": 991}}, "attributes.erp\u0000order.[key]"),
    "attachment": ({"attachments": [{"name": "plan\u0000.pdf"}]}, "attachments.0.name"),
    "identity": (
        {"identities": [{"type": "phone", "value": "+33612345678\u0000"}]},
        "identities.0.value",
    ),
    "scope": (
        {"identities": [{"type": "external", "scope": "c\u0000rm", "value": "42"}]},
        "identities.0.scope",
    ),
    "provider-id": ({"provider_message_id": "crm-\u0000"}, "provider_message_id"),
    "thread": ({"thread": {"id": "case\u00007"}}, "thread.id"),
    "provider-ids": ({"provider_ids": {"ticket": "T\u00001"}}, "provider_ids.ticket"),
    "consent": ({"consent": [{**WITHDRAWN, "reason": "asked\u0000"}]}, "consent.0.reason"),
}


@pytest.mark.parametrize(("overrides", "field"), NUL_FIELDS.values(), ids=NUL_FIELDS.keys())
async def test_nul_characters_are_refused_naming_the_field(
    client: httpx.AsyncClient, overrides: dict[str, Any], field: str
) -> None:
    """PostgreSQL's text and jsonb cannot hold U+0000: a 202 would be a silently lost event."""
    response = await client.post("/v1/interactions", json=body(**overrides))
    assert response.status_code == 422, response.text
    details = response.json()["detail"]
    assert [d["field"] for d in details] == [field]
    assert "NUL" in details[0]["message"]


async def test_body_over_one_mebibyte_is_refused(
    client: httpx.AsyncClient, pool: asyncpg.Pool, tokens: dict[Role, str]
) -> None:
    payload = body(text="x" * (1024 * 1024))
    response = await client.post("/v1/interactions", json=payload)
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    streamed = await client.post(
        "/v1/interactions",
        headers={"content-type": "application/json"},
        content=_chunks(b"{" + b" " * (1024 * 1024 + 10) + b"}"),
    )
    assert streamed.status_code == 413
    event_id = await event_id_of(pool, tokens[Role.INTEGRATION], payload["provider_message_id"])
    assert await pool.fetchval("SELECT count(*) FROM timeline WHERE event_id = $1", event_id) == 0


async def _chunks(data: bytes) -> Any:
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


async def test_not_json_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/interactions", content=b"hello", headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    broken = await client.post(
        "/v1/interactions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422


async def test_requests_without_a_valid_token_get_401(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as anonymous:
        refused = await anonymous.post("/v1/interactions", json=body())
        assert refused.status_code == 401
        # the same answer as every other /v1 route gives (FastAPI's HTTPException handler)
        assert refused.json() == {"detail": "missing bearer token"}
        assert refused.headers["www-authenticate"] == "Bearer"
        assert (
            await anonymous.get("/v1/customers", params={"identity": "email:a@example.com"})
        ).status_code == 401
        forged = {"authorization": "Bearer omh_forged"}
        forged_post = await anonymous.post("/v1/interactions", json=body(), headers=forged)
        assert forged_post.status_code == 401
        assert forged_post.json() == {"detail": "invalid or revoked token"}
        assert (await anonymous.get("/healthz")).status_code == 200


async def test_only_the_token_hash_is_stored(pool: asyncpg.Pool, tokens: dict[Role, str]) -> None:
    token = tokens[Role.INTEGRATION]
    stored = await pool.fetchval(
        "SELECT token_hash FROM api_tokens WHERE name = $1", "test-integration"
    )
    assert stored == hash_token(token)
    assert token not in stored
    assert await pool.fetchval("SELECT count(*) FROM api_tokens WHERE token_hash = $1", token) == 0


async def test_timeline_pages_newest_first_with_a_cursor(client: httpx.AsyncClient) -> None:
    email = f"{unique('pager')}@example.com"
    days = [f"2026-10-{day:02d}T12:00:00Z" for day in range(1, 8)]
    for day in days:
        response = await client.post(
            "/v1/interactions",
            json=body(identities=[{"type": "email", "value": email}], occurred_at=day, text=day),
        )
        assert response.status_code == 202
    found = await eventually(lambda: customer_of(client, f"email:{email}"))

    async def all_seven() -> Any:
        page = await timeline(client, found["id"], limit=200)
        return page if len(page["items"]) == 7 else None

    await eventually(all_seven)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = await timeline(client, found["id"], **params)
        seen += [item["text"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(days, reverse=True)
    bad = await client.get(f"/v1/customers/{found['id']}/timeline", params={"cursor": "zzz"})
    assert bad.status_code == 422


async def test_identities_link_to_one_customer(client: httpx.AsyncClient) -> None:
    email = f"{unique('carol')}@example.com"
    phone = f"+3361{int(unique('')[-8:], 16) % 10**7:07d}"
    await client.post(
        "/v1/interactions",
        json=body(identities=[{"type": "email", "value": email}], channel="email"),
    )
    await client.post(
        "/v1/interactions",
        json=body(
            identities=[{"type": "phone", "value": phone}, {"type": "email", "value": email}],
            channel="sms",
        ),
    )
    by_email = await eventually(lambda: customer_of(client, f"email:{email}"))
    by_phone = await eventually(lambda: customer_of(client, f"phone:{phone}"))
    assert by_email["id"] == by_phone["id"]

    async def both() -> Any:
        page = await timeline(client, by_email["id"])
        return page if len(page["items"]) == 2 else None

    page = await eventually(both)
    assert {item["channel"] for item in page["items"]} == {"email", "sms"}


async def test_unknown_customer_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/customers/00000000-0000-0000-0000-000000000000")
    assert response.status_code == 404


async def test_health_readiness_and_metrics(api_url: str) -> None:
    async with httpx.AsyncClient(base_url=api_url) as http:
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["kafka"] == "ok"
        metrics = await http.get("/metrics")
        assert "omnihub_http_requests_total" in metrics.text


async def test_interactions_are_counted_under_their_route_and_documented(
    client: httpx.AsyncClient,
) -> None:
    def accepted_so_far(text: str) -> float:
        wanted = 'omnihub_http_requests_total{route="/v1/interactions",status="202"}'
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(wanted))

    before = accepted_so_far((await client.get("/metrics")).text)
    response = await client.post("/v1/interactions", json=body())
    assert response.status_code == 202
    assert set(response.json()) == {"event_id", "status"}
    assert accepted_so_far((await client.get("/metrics")).text) == before + 1
    schema = (await client.get("/openapi.json")).json()
    answer = schema["paths"]["/v1/interactions"]["post"]["responses"]["202"]
    assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/Accepted")

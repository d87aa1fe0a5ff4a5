"""The OpenAPI description says what the API does (issue #28): every answer it gives, with its
media type, body and headers; only the API (not the console's pages); the constraints the
models enforce. The answers a fuzz run rarely meets (no token, a token without the scope,
PostgreSQL down) are provoked here on a real API and held to the description with
schemathesis' conformance checks; tests/test_fuzz.py holds the rest of it."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from prometheus_client import CONTENT_TYPE_LATEST
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.identities import STORABLE
from schemas.jsonschema import rendered
from services.api.app import create_app
from services.api.auth import Role, create_token
from services.config import Settings
from tests.support import eventually, unique
from tests.test_token_scopes import CUSTOMER, EVENT, MATRIX

#: What every answer below is held to: a status the operation lists, with the media type,
#: body schema and headers it lists for that status.
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
#: The models of every refusal: the hub's own (services/api/errors.py), a channel client
#: route's (channels/base/webhook.py) and /readyz's.
REFUSALS = {"Error", "Invalid", "Refusal", "Readiness"}
REF = "#/components/schemas/"


@pytest.fixture(scope="module")
def description() -> dict[str, Any]:
    """The description of the whole web process (api and every channel), built in-process."""
    app = create_app(Settings(), "127.0.0.1:9", "postgresql://unused@127.0.0.1:9/unused")
    return app.openapi()


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """Every (method, path, operation) of the description."""
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


def scopes_of(operation: dict[str, Any]) -> list[str]:
    """The token scopes an operation lists (none: it needs no token)."""
    return [scope for need in operation.get("security", []) for scope in need.get("bearer", [])]


# --- the description itself ------------------------------------------------------------------


def test_the_console_pages_are_not_in_the_api_description(description: dict[str, Any]) -> None:
    paths = set(description["paths"])
    assert not [path for path in paths if path.startswith("/console")]
    assert {"/v1/interactions", "/v1/customers", "/healthz", "/metrics"} <= paths


def test_each_route_lists_the_scope_it_needs_and_the_answers_of_a_token(
    description: dict[str, Any],
) -> None:
    """The scopes as tests/test_token_scopes.py finds them; 401, 403 and 503 (tokens are
    looked up in PostgreSQL) on each of those routes, and on no other."""
    needed = {(method, path.split("?")[0]): scope.value for method, path, scope, _ in MATRIX}
    listed: dict[tuple[str, str], str] = {}
    for method, path, operation in operations(description):
        concrete = (
            path.replace("{customer_id}", CUSTOMER)
            .replace("{key_id}", CUSTOMER)
            .replace("{event_id}", EVENT)
            .replace("{index}", "1")
        )
        responses = operation["responses"]
        if scopes := scopes_of(operation):
            (listed[(method, concrete)],) = scopes
            assert {"401", "403", "503"} <= set(responses), (method, path)
            assert "WWW-Authenticate" in responses["401"]["headers"]
            assert "Retry-After" in responses["503"]["headers"]
        else:
            assert "401" not in responses, (method, path)
    assert listed == needed
    assert description["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_every_refusal_has_a_body_of_the_hubs_models(description: dict[str, Any]) -> None:
    for method, path, operation in operations(description):
        for status, answer in operation["responses"].items():
            assert answer.get("content"), (method, path, status)
            if int(status) < 400:
                continue
            for media_type, content in answer["content"].items():
                if media_type == "application/json":
                    model = content["schema"]["$ref"].removeprefix(REF)
                    assert model in REFUSALS, (method, path, status, model)
                else:
                    assert content["schema"] == {"type": "string"}, (method, path, status)
            if status == "503" and path != "/readyz":
                assert answer["headers"]["Retry-After"]["required"], (method, path)
    assert "HTTPValidationError" not in description["components"]["schemas"]


def test_media_types_are_those_the_routes_answer_with(description: dict[str, Any]) -> None:
    """JSON everywhere, but Prometheus text on /metrics and TwiML or plain text to providers'
    webhooks (Twilio, the mail services)."""
    for method, path, operation in operations(description):
        media = {m for answer in operation["responses"].values() for m in answer["content"]}
        if path == "/metrics":
            assert media == {CONTENT_TYPE_LATEST}
        elif path.endswith("/files/{index}"):  # a file, of its stored type; refusals in JSON
            assert media == {"application/octet-stream", "application/json"}, (method, path)
        elif path.startswith("/channels/"):
            assert media <= {"text/xml; charset=utf-8", "text/plain; charset=utf-8"} | {
                "application/json"  # the body limit's 413, before the adapter is asked
            }, (method, path)
        else:
            assert media == {"application/json"}, (method, path, media)
    twiml = description["paths"]["/channels/twilio/sms"]["post"]["responses"]["200"]
    assert set(twiml["content"]) == {"text/xml; charset=utf-8"}


def test_operations_taking_a_body_list_what_a_bad_body_gets(description: dict[str, Any]) -> None:
    for method, path, operation in operations(description):
        if "requestBody" in operation:
            assert {"413", "422"} <= set(operation["responses"]), (method, path)


def test_the_models_constraints_are_in_the_schemas(description: dict[str, Any]) -> None:
    """Identity values are not empty, no string and no attribute key may hold NUL: in the
    API's description and in the events' JSON Schemas (one source: the models)."""
    schemas = description["components"]["schemas"]
    value = schemas["Identity"]["properties"]["value"]
    assert value["minLength"] == 1 and value["pattern"] == STORABLE
    request = schemas["InteractionRequest"]["properties"]
    for name in ("text", "subject", "language"):
        assert request[name]["anyOf"][0]["pattern"] == STORABLE, name
    for name in ("attributes", "provider_ids"):
        assert request[name]["propertyNames"] == {"pattern": STORABLE}, name
    profile = schemas["ProfileUpdate"]["properties"]
    assert profile["name"]["anyOf"][0]["pattern"] == STORABLE
    assert schemas["MergeRequest"]["properties"]["reason"]["pattern"] == STORABLE
    interaction = json.loads(rendered()["interaction.v1.schema.json"])
    identity = interaction["$defs"]["Identity"]["properties"]["value"]
    assert identity["minLength"] == 1 and identity["pattern"] == STORABLE
    assert interaction["properties"]["attributes"]["propertyNames"] == {"pattern": STORABLE}


# --- the answers, from a real API -------------------------------------------------------------


def call(operation: Any, customer: str | None = None) -> tuple[str, str, dict[str, str]]:
    """The method and path to call ``operation`` with (about ``customer``), and its path
    parameters."""
    some = customer or str(uuid.uuid4())
    parameters = {
        name: some
        for name in ("customer_id", "key_id", "event_id")
        if "{" + name + "}" in operation.path
    }
    if "{index}" in operation.path:
        parameters["index"] = "1"
    return operation.method.upper(), operation.path.format(**parameters), parameters


async def held_to_description(
    http: httpx.AsyncClient, operation: Any, headers: dict[str, str], body: Any = None
) -> httpx.Response:
    """Call ``operation`` with ``headers`` (and a JSON ``body``); its answer must be as the
    description says (schemathesis' conformance checks)."""
    method, path, parameters = call(operation)
    response = await http.request(method, path, headers=headers, json=body)
    sent = {} if body is None else {"body": body}
    case = operation.Case(path_parameters=parameters, headers=headers, **sent)
    case.validate_response(response, checks=CONFORMANCE)
    return response


@pytest.fixture(scope="module")
def live(api_url: str) -> Any:
    """The running API's description, as schemathesis reads it."""
    return schemathesis.openapi.from_url(f"{api_url}/openapi.json", timeout=30)


@pytest.fixture(scope="module")
async def scopeless(pool: asyncpg.Pool) -> str:
    """A valid token holding no scope."""
    async with pool.acquire() as conn:
        return await create_token(conn, Role.INTEGRATION, unique("scopeless"), scopes=[])


async def test_a_token_is_asked_for_exactly_where_described(live: Any, api_url: str) -> None:
    """Without a token, each operation that lists a scope answers 401 and none other does;
    every answer as described (healthz, readyz and metrics answer 200, Twilio's routes 403)."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for result in live.get_all_operations():
            operation = result.ok()
            response = await held_to_description(http, operation, {})
            listed = scopes_of(operation.definition.raw)
            assert (response.status_code == 401) == bool(listed), (operation.label, response)


async def test_bad_and_scopeless_tokens_are_refused_as_described(
    live: Any, api_url: str, scopeless: str
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        for result in live.get_all_operations():
            operation = result.ok()
            if not scopes_of(operation.definition.raw):
                continue
            bad = {"authorization": "Bearer omh_not-a-token"}
            assert (await held_to_description(http, operation, bad)).status_code == 401
            without = {"authorization": f"Bearer {scopeless}"}
            refused = await held_to_description(http, operation, without)
            assert refused.status_code == 403, operation.label
            assert scopes_of(operation.definition.raw)[0] in refused.json()["detail"]


async def test_nul_in_free_text_is_refused_with_422_as_described(
    live: Any, api_url: str, tokens: dict[Role, str], processors: Any
) -> None:
    """Strings the description says may not hold NUL (they go to PostgreSQL, which cannot
    store it) are refused with 422 about a real customer: not let through to fail there."""
    headers = {"authorization": f"Bearer {tokens[Role.ADMIN]}"}
    email = f"{unique('nul')}@example.com"
    interaction = {"identities": [{"type": "email", "value": email}], "provider_message_id": email}
    by_label = {result.ok().label: result.ok() for result in live.get_all_operations()}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        assert (await http.post("/v1/interactions", json=interaction)).status_code == 202

        async def customer() -> str | None:
            found = await http.get("/v1/customers", params={"identity": f"email:{email}"})
            return next((c["id"] for c in found.json()["customers"]), None)

        customer_id = await eventually(customer)
        nul = "a reason\x00"
        bodies: dict[str, list[dict[str, Any]]] = {
            "PATCH /v1/customers/{customer_id}/profile": [
                {"name": nul},
                {"attributes": {nul: "value"}},
                {"attributes": {"key": nul}},
                {"addresses": [{"lines": [nul]}]},
            ],
            "POST /v1/customers/{customer_id}/merge": [{"other": str(uuid.uuid4()), "reason": nul}],
            "POST /v1/customers/{customer_id}/links": [
                {"identity": {"type": "user_id", "value": unique("u")}, "reason": nul}
            ],
            "POST /v1/customers/{customer_id}/split": [
                {"identities": [{"type": "email", "value": email}], "reason": nul}
            ],
            "DELETE /v1/customers/{customer_id}": [{"reason": nul}],
        }
        for label, cases in bodies.items():
            operation = by_label[label]
            for body in cases:
                method, path, parameters = call(operation, customer_id)
                response = await http.request(method, path, json=body)
                case = operation.Case(path_parameters=parameters, headers=headers, body=body)
                case.validate_response(response, checks=CONFORMANCE)
                assert response.status_code == 422, (label, body, response.text)


@pytest.fixture
async def app_without_postgres(app_with_own_postgres: Any) -> AsyncIterator[Any]:
    """The real app in-process, started on its own PostgreSQL, which is then stopped."""
    app, postgres = app_with_own_postgres
    await asyncio.to_thread(postgres.stop)
    yield app


async def test_postgres_down_is_answered_as_described(app_without_postgres: Any) -> None:
    """Each operation that needs a token answers 503 with Retry-After (the token cannot be
    looked up); /readyz 503 with its checks; /healthz and /metrics 200."""
    app = app_without_postgres
    described: Any = schemathesis.openapi.from_dict(app.openapi())
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"authorization": "Bearer omh_any-token"}
    async with httpx.AsyncClient(transport=transport, base_url="http://hub", timeout=30) as http:
        for result in described.get_all_operations():
            operation = result.ok()
            if operation.path.startswith("/channels/"):
                continue  # a provider's routes need neither PostgreSQL nor a token
            response = await held_to_description(http, operation, headers)
            if scopes_of(operation.definition.raw) or operation.path == "/readyz":
                assert response.status_code == 503, (operation.label, response.text)
            else:
                assert response.status_code == 200, (operation.label, response.text)

"""Routing end to end: interactions posted to the HTTP API, routed by the real processors
worker, read from the department topics with confluent-kafka (a client that is not aiokafka),
checked against the committed JSON Schema and the CloudEvents headers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import Department
from schemas.sealing import SEALED_CONTENT_TYPE, SEALED_TYPE_HEADER
from schemas.topics import ROUTED
from services.api.auth import Role
from tests.support import ROOT, DepartmentKeys, eventually, unique

pytestmark = pytest.mark.usefixtures("processors")

SCHEMA = json.loads((ROOT / "schemas" / "json" / "routed.v1.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
CE_HEADERS = {"ce_id", "ce_type", "ce_source", "ce_specversion", "content-type"}
#: How this module opens sealed records: as a department does (set by ``department_keys``).
DEPARTMENT_KEYS: list[DepartmentKeys] = []


@pytest.fixture(autouse=True)
def department_keys(api_url: str, tokens: dict[Role, str]) -> Iterator[None]:
    """Open the department topics' sealed records with keys from the API (keys:read)."""
    DEPARTMENT_KEYS[:] = [DepartmentKeys(api_url, tokens[Role.ADMIN])]
    yield
    DEPARTMENT_KEYS.clear()


def _consume(
    bootstrap: str,
    departments: list[Department],
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float,
) -> list[dict[str, Any]]:
    """Read the departments' topics from the beginning with confluent-kafka until ``until``."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique("routing-e2e"),
            "enable.auto.commit": False,
        }
    )
    consumer.assign(
        [
            TopicPartition(ROUTED[d].name, p, OFFSET_BEGINNING)
            for d in departments
            for p in range(ROUTED[d].partitions)
        ]
    )
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                if until(seen):
                    return seen
                continue
            headers = {k: v.decode() for k, v in (message.headers() or [])}
            plain = DEPARTMENT_KEYS[0].open(headers, message.value())
            if plain is None:  # an erased customer's (another test's): unreadable, skipped
                continue
            seen.append(
                {
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "key": message.key(),
                    "raw": message.value(),
                    "value": json.loads(plain),
                    "headers": headers,
                }
            )
            if until(seen):
                return seen
    finally:
        consumer.close()
    raise AssertionError(f"condition not met within {timeout}s ({len(seen)} records read)")


async def consume(
    bootstrap: str,
    departments: list[Department],
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    return await asyncio.to_thread(_consume, bootstrap, departments, until, timeout)


def of_event(records: list[dict[str, Any]], event_id: str) -> list[dict[str, Any]]:
    return [r for r in records if r["value"]["event_id"] == event_id]


async def post(client: httpx.AsyncClient, identity: str, text: str, **fields: Any) -> str:
    body = {
        "channel": "email",
        "identities": [{"type": "email", "value": identity}],
        "text": text,
        "provider_message_id": unique("route"),
        **fields,
    }
    response = await client.post("/v1/interactions", json=body)
    assert response.status_code == 202, response.text
    return str(response.json()["event_id"])


def person() -> str:
    return f"{unique('r')}@example.com"


async def test_routed_records_are_json_with_schema_headers_reason_and_copies(
    stack: Any, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    event_id = await post(
        client,
        person(),
        "Bonjour, vos factures de mars sont fausses et le grille-pain est arrivé cassé.",
        subject="Factures",
    )
    records = await consume(
        stack.bootstrap,
        [Department.FINANCE, Department.AFTER_SALES],
        lambda rs: len(of_event(rs, event_id)) >= 2,
    )
    ours = {r["topic"]: r for r in of_event(records, event_id)}
    assert set(ours) == {ROUTED[Department.FINANCE].name, ROUTED[Department.AFTER_SALES].name}
    for record in ours.values():
        VALIDATOR.validate(record["value"])
        assert CE_HEADERS <= set(record["headers"])
        assert record["headers"]["ce_id"] == event_id
        assert record["headers"]["ce_type"] == "com.omnihub.routed.v1"
        assert record["headers"]["ce_source"] == "services/processors"
        assert record["headers"]["ce_specversion"] == "1.0"
        # sealed with the customer's key; the CloudEvents headers stay readable
        assert record["headers"]["content-type"] == SEALED_CONTENT_TYPE
        assert record["headers"][SEALED_TYPE_HEADER] == "application/json"
        assert b"facture" not in record["raw"].lower()
        assert record["key"] == record["value"]["customer_id"].encode()
        routing = record["value"]["routing"]
        assert routing["rule_id"] == "invoice-for-defective-product"
        assert routing["ruleset_version"].startswith("default/1+")
        assert "factures" in routing["reason"].casefold() and "cassé" in routing["reason"]
        assert routing["language"] == "fr"
        assert record["value"]["interaction"]["language"] == "fr"  # it declared none
    primary = ours[ROUTED[Department.FINANCE].name]["value"]["routing"]
    copy = ours[ROUTED[Department.AFTER_SALES].name]["value"]["routing"]
    assert primary["department"] == "finance" and primary["copy_of"] is None
    assert copy["department"] == "after_sales" and copy["copy_of"] == "finance"

    customer_id = ours[ROUTED[Department.FINANCE].name]["value"]["customer_id"]

    async def routed_on_timeline() -> Any:
        page = (await client.get(f"/v1/customers/{customer_id}/timeline")).json()
        items = [i for i in page.get("items", []) if i["event_id"] == event_id]
        return items and items[0]["department"] and items[0]

    item = await eventually(routed_on_timeline, timeout=30)
    assert item["department"] == "finance" and item["language"] == "fr"
    row = await pool.fetchrow(
        "SELECT copies, rule_id FROM routing_decisions WHERE event_id = $1", uuid.UUID(event_id)
    )
    assert row["copies"] == ["after_sales"]


async def test_opt_out_sets_consent_and_marketing_gets_nothing_more(
    stack: Any, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    who = person()
    stop = await post(client, who, "Отписаться")
    records = await consume(
        stack.bootstrap, [Department.MARKETING], lambda rs: bool(of_event(rs, stop))
    )
    opt_out = of_event(records, stop)[0]["value"]
    assert opt_out["routing"]["tags"] == ["opt-out"]
    assert opt_out["routing"]["language"] == "ru"
    customer_id = uuid.UUID(opt_out["customer_id"])

    async def withdrawn() -> Any:
        return await pool.fetchrow(
            "SELECT granted, reason, source_event FROM consents"
            " WHERE customer_id = $1 AND channel = '*' AND purpose = 'marketing'",
            customer_id,
        )

    consent = await eventually(withdrawn, timeout=30)
    assert consent["granted"] is False and str(consent["source_event"]) == stop
    listed = (await client.get(f"/v1/customers/{customer_id}")).json()["consents"]
    assert {"channel": "*", "purpose": "marketing", "granted": False} in [
        {k: c[k] for k in ("channel", "purpose", "granted")} for c in listed
    ]

    # The same customer then writes about the newsletter: marketing must not get it.
    newsletter = await post(client, who, "Where can I read last month's newsletter?")
    rerouted = await consume(
        stack.bootstrap,
        [Department.TRIAGE, Department.SALES, Department.FINANCE, Department.AFTER_SALES],
        lambda rs: bool(of_event(rs, newsletter)),
    )
    routing = of_event(rerouted, newsletter)[0]["value"]["routing"]
    assert routing["department"] != "marketing"
    assert "marketing consent withdrawn" in routing["reason"]
    # Once that decision was published, markers from other customers go to marketing until one
    # lands on this customer's partition: partitions are ordered, so reading it up to the marker
    # covers every marketing record this customer's events could have produced.
    partition = of_event(records, stop)[0]["partition"]
    markers: list[str] = []
    for _ in range(64):
        markers.append(await post(client, person(), "Please send me your newsletter"))
        seen = await consume(
            stack.bootstrap,
            [Department.MARKETING],
            lambda rs: all(of_event(rs, m) for m in markers),
        )
        if any(r["partition"] == partition for m in markers for r in of_event(seen, m)):
            break
    else:
        raise AssertionError("no marker landed on the customer's partition")
    assert of_event(seen, newsletter) == []
    from_them = [
        r["value"]["event_id"] for r in seen if r["value"]["customer_id"] == str(customer_id)
    ]
    assert from_them == [stop]


async def test_rules_diff_replays_stored_interactions(
    stack: Any, client: httpx.AsyncClient, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    event_id = await post(client, person(), "Ich habe die Rechnung für Oktober nicht erhalten.")

    async def on_timeline() -> Any:
        return await pool.fetchval(
            "SELECT count(*) FROM timeline WHERE event_id = $1", uuid.UUID(event_id)
        )

    await eventually(on_timeline, timeout=30)
    shipped = ROOT / "services" / "routing" / "rules" / "default.yaml"
    changed = tmp_path / "rules" / "candidate.yaml"
    changed.parent.mkdir()
    (changed.parent / "training.jsonl").write_text((shipped.parent / "training.jsonl").read_text())
    text = shipped.read_text()
    assert "    then:\n      department: finance\n      tags: [billing]" in text
    changed.write_text(
        text.replace(
            "    then:\n      department: finance\n      tags: [billing]",
            "    then:\n      department: sales\n      tags: [billing]",
        )
    )
    env = dict(os.environ, DATABASE_URL=stack.database_url, COLUMNS="200")

    def diff(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", "rules", "diff", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )

    result = await asyncio.to_thread(diff, str(shipped), str(changed), "--since", "1h", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["replayed"] >= 1 and summary["old_version"] != summary["new_version"]
    ours = [c for c in summary["changes"] if c["event_id"] == event_id]
    assert len(ours) == 1
    assert ours[0]["old"]["department"] == "finance" and ours[0]["old"]["rule_id"] == "billing"
    assert ours[0]["new"]["department"] == "sales"
    unchanged = await asyncio.to_thread(diff, str(shipped), str(shipped), "--since", "1h")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "0 of" in unchanged.stdout and "would change" in unchanged.stdout

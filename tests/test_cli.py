"""The omnihub command line against the session stack: topics, tail, token create/revoke."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from schemas.topics import ALL_TOPICS
from tests.support import ROOT, eventually, unique


def omnihub(env: dict[str, str], *args: str) -> str:
    """Run the CLI and return its standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        env=dict(env, COLUMNS="250"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_topics_lists_the_contract(component_env: dict[str, str]) -> None:
    out = omnihub(component_env, "topics")
    for spec in ALL_TOPICS:
        assert spec.name in out


@pytest.mark.usefixtures("processors")
async def test_tail_prints_records_as_json_lines(
    component_env: dict[str, str], client: httpx.AsyncClient
) -> None:
    provider_id = unique("tail")
    response = await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": f"{provider_id}@example.com"}],
            "text": "<script>alert(1)</script>",
            "provider_message_id": provider_id,
        },
    )
    event_id = response.json()["event_id"]
    out = omnihub(
        component_env,
        "tail",
        "omnihub.interactions.v1",
        "--from-beginning",
        "--limit",
        "100000",
        "--idle",
        "2",
    )
    lines = [json.loads(line) for line in out.splitlines()]
    [ours] = [line for line in lines if line["headers"].get("ce_id") == event_id]
    assert ours["value"]["text"] == "<script>alert(1)</script>"
    assert ours["key"].startswith("email::")


async def test_revoked_token_stops_working(component_env: dict[str, str], api_url: str) -> None:
    name = unique("ci-bot")
    token = (
        omnihub(component_env, "token", "create", "--role", "integration", "--name", name)
        .strip()
        .splitlines()[-1]
    )
    headers = {"authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers) as http:
        probe = {"identity": "email:nobody@example.com"}
        assert (await http.get("/v1/customers", params=probe)).status_code == 200
        out = omnihub(component_env, "token", "revoke", "--name", name)
        assert "revoked 1 token" in out

        async def refused() -> Any:
            # the API caches token answers for up to 30 s
            return (await http.get("/v1/customers", params=probe)).status_code == 401

        assert await eventually(refused, timeout=45, interval=1)

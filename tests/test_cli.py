"""The omnihub command line against the session stack: topics, tail, token create/list/revoke."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
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
    assert ours["value"]["text"] == "<script>alert(1)</script>"  # opened with the period key
    assert ours["headers"]["x-omnihub-sealed"] == "period"
    assert ours["key"].startswith("bucket:")


async def test_revoked_token_stops_working(component_env: dict[str, str], api_url: str) -> None:
    name = unique("ci-bot")
    token = (
        omnihub(
            component_env,
            *("token", "create", "--role", "integration", "--name", name),
            *("--scope", "customers:read"),
        )
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
            return (await http.get("/v1/customers", params=probe)).status_code == 401

        # the API caches token answers for 30 s, but a revocation drops its cached answer at
        # once (migration 0014's notification)
        assert await eventually(refused, timeout=5, interval=0.1)


def created(env: dict[str, str], *args: str) -> str:
    """The token `omnihub token create` prints (its last line)."""
    return omnihub(env, "token", "create", *args).strip().splitlines()[-1]


async def test_new_tokens_get_least_privilege(component_env: dict[str, str], api_url: str) -> None:
    name = unique("least")
    posting = created(component_env, "--role", "integration", "--name", name)
    reading = created(
        component_env, "--role", "integration", "--name", name, "--scope", "customers:read"
    )
    agent = created(component_env, "--role", "agent", "--name", name)
    probe = {"identity": "email:nobody@example.com"}
    interaction = {
        "identities": [{"type": "email", "value": f"{name}@example.com"}],
        "provider_message_id": name,
    }
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:

        def auth(token: str) -> dict[str, str]:
            return {"authorization": f"Bearer {token}"}

        refused = await http.get("/v1/customers", params=probe, headers=auth(posting))
        assert refused.status_code == 403
        assert "customers:read" in refused.json()["detail"]
        posted = await http.post("/v1/interactions", json=interaction, headers=auth(posting))
        assert posted.status_code == 202, posted.text
        sms = await http.post(
            "/v1/interactions", json={**interaction, "channel": "sms"}, headers=auth(posting)
        )
        assert sms.status_code == 403
        assert "sms" in sms.json()["detail"]
        assert (await http.get("/v1/customers", params=probe, headers=auth(reading))).is_success
        assert (await http.get("/v1/customers", params=probe, headers=auth(agent))).is_success
        export = await http.get(f"/v1/customers/{uuid.uuid4()}/export", headers=auth(agent))
        assert export.status_code == 403
        agent_post = await http.post("/v1/interactions", json=interaction, headers=auth(agent))
        assert agent_post.status_code == 403


def test_token_list_shows_scopes_and_channels_never_tokens(component_env: dict[str, str]) -> None:
    name = unique("listed")
    token = created(
        component_env,
        *("--role", "integration", "--name", name),
        *("--scope", "messages:send", "--channel", "sms"),
    )
    out = omnihub(component_env, "token", "list")
    [line] = [line for line in out.splitlines() if name in line]
    assert line.split("\t")[:4] == [
        name,
        "integration",
        "interactions:write,messages:send",
        "api,sms",
    ]
    assert line.split("\t")[-1] == "-"
    assert token not in out
    omnihub(component_env, "token", "revoke", "--name", name)
    [line] = [line for line in omnihub(component_env, "token", "list").splitlines() if name in line]
    assert line.split("\t")[-1] != "-"  # revoked: when

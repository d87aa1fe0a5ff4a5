"""The console over plain HTTP: sessions, cookies, CSRF, throttling, roles, queues, the CLI."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.console import sessions, throttle
from tests.console_support import PASSWORD, ConsoleHttp, make_user
from tests.support import ROOT, eventually, phone, unique

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
async def console(api_url: str) -> AsyncIterator[ConsoleHttp]:
    """A browser-like client without a session yet."""
    client = ConsoleHttp(api_url)
    yield client
    await client.close()


async def routed_sms(client: httpx.AsyncClient, pool: asyncpg.Pool, text: str) -> dict[str, Any]:
    """Post an inbound SMS through the API; return its routing decision once routed."""
    response = await client.post(
        "/v1/interactions",
        json={
            "channel": "sms",
            "identities": [{"type": "phone", "value": phone()}],
            "text": text,
            "provider_message_id": unique("sms"),
        },
    )
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]

    async def decided() -> Any:
        row = await pool.fetchrow(
            "SELECT r.*, t.customer_id AS live FROM routing_decisions r"
            " JOIN timeline t USING (event_id) WHERE r.event_id = $1::uuid",
            event_id,
        )
        return dict(row) if row else None

    return await eventually(decided, timeout=30)


async def test_session_cookie_is_httponly_strict_secure_and_sign_out_ends_it(
    console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    agent = await make_user(pool, "agent", ["triage"])
    answer = await console.sign_in(agent.username)
    assert answer.status_code == 303 and answer.headers["location"] == "/console"
    [cookie] = [h for h in console.set_cookie_headers if h.startswith(sessions.COOKIE + "=")]
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "secure", "path=/console"} <= flags
    stored = await pool.fetchval(
        "SELECT count(*) FROM console_sessions WHERE id_hash = $1",
        console.cookies[sessions.COOKIE],
    )
    assert stored == 0  # only the hash of the cookie's id is stored
    home = await console.get("/console")
    assert home.headers["location"] == "/console/queues/triage"
    page = await console.get("/console/queues/triage")
    assert page.status_code == 200 and "Triage queue" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    token = await console.csrf()
    old_cookie = console.cookies[sessions.COOKIE]
    out = await console.post("/console/sign-out", {"csrf": token})
    assert out.status_code == 303 and not console.signed_in
    console.cookies[sessions.COOKIE] = old_cookie  # a copied cookie no longer works either
    again = await console.get("/console/queues/triage")
    assert again.status_code == 303
    assert again.headers["location"].startswith("/console/sign-in?next=")


async def test_state_changes_need_the_session_csrf_token(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    routed = await routed_sms(client, pool, "Hello, I would like a quote for 20 chairs")
    agent = await make_user(pool, "agent", [routed["department"]])
    await console.sign_in(agent.username)
    claim = f"/console/queues/{routed['department']}/items/{routed['event_id']}/claim"
    for token in (None, "not-the-token"):
        refused = await console.post(claim, {"csrf": token} if token else {})
        assert refused.status_code == 403
    state = await pool.fetchval(
        "SELECT state FROM console_queue_items WHERE event_id = $1", routed["event_id"]
    )
    assert state is None
    header = await console.request("POST", claim, headers={"x-csrf-token": await console.csrf()})
    assert header.status_code == 303
    assert (
        await pool.fetchval(
            "SELECT assignee FROM console_queue_items WHERE event_id = $1", routed["event_id"]
        )
        == agent.id
    )


async def test_sign_in_is_throttled_after_repeated_failures(
    console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    agent = await make_user(pool, "agent", ["sales"])
    for _ in range(throttle.MAX_FAILURES):
        wrong = await console.sign_in(agent.username, "wrong password, sorry")
        assert wrong.status_code == 401 and "Wrong username or password" in wrong.text
    blocked = await console.sign_in(agent.username, PASSWORD)  # even the right password
    assert blocked.status_code == 429 and not console.signed_in
    unknown = await console.sign_in("nobody-" + unique(), PASSWORD)
    assert unknown.status_code == 401


async def test_sign_in_form_needs_its_own_token(console: ConsoleHttp, pool: asyncpg.Pool) -> None:
    agent = await make_user(pool, "agent", ["sales"])
    forged = await console.post(
        "/console/sign-in", {"username": agent.username, "password": PASSWORD}
    )
    assert forged.status_code == 403 and not console.signed_in


async def test_queue_claim_assign_done_and_department_walls(
    api_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    routed = await routed_sms(client, pool, "My invoice 2231 was charged twice, please refund")
    department = routed["department"]
    other = next(d for d in ("sales", "finance", "triage") if d != department)
    item = f"/console/queues/{department}/items/{routed['event_id']}"
    agent = await make_user(pool, "agent", [department])
    colleague = await make_user(pool, "agent", [department])
    outsider = await make_user(pool, "agent", [other])
    supervisor = await make_user(pool, "supervisor")
    sessions_: dict[str, ConsoleHttp] = {}
    try:
        for who in (agent, colleague, outsider, supervisor):
            sessions_[who.username] = ConsoleHttp(api_url)
            await sessions_[who.username].sign_in(who.username)
        a, c, o, s = (sessions_[u.username] for u in (agent, colleague, outsider, supervisor))

        listing = await a.get(f"/console/queues/{department}")
        assert routed["event_id"].hex in listing.text.replace("-", "")
        assert (await o.get(f"/console/queues/{department}")).status_code == 403
        refused = await o.post(f"{item}/claim", {"csrf": await o.csrf()})
        assert refused.status_code == 403

        assert (await a.post(f"{item}/claim", {"csrf": await a.csrf()})).status_code == 303
        taken = await c.post(f"{item}/claim", {"csrf": await c.csrf()})
        assert taken.status_code == 409 and "someone else claimed it" in taken.text
        assert (await c.post(f"{item}/done", {"csrf": await c.csrf()})).status_code == 409
        not_yours = await a.post(
            f"{item}/assign", {"csrf": await a.csrf(), "assignee": str(colleague.id)}
        )
        assert not_yours.status_code == 403

        assigned = await s.post(
            f"{item}/assign", {"csrf": await s.csrf(), "assignee": str(colleague.id)}
        )
        assert assigned.status_code == 303
        mine = await c.get(f"/console/queues/{department}?view=mine")
        assert str(routed["event_id"]) in mine.text
        assert (await c.post(f"{item}/done", {"csrf": await c.csrf()})).status_code == 303
        done = await a.get(f"/console/queues/{department}?view=done")
        assert str(routed["event_id"]) in done.text
        row = await pool.fetchrow(
            "SELECT state, assignee FROM console_queue_items WHERE event_id = $1",
            routed["event_id"],
        )
        assert (row["state"], row["assignee"]) == ("done", colleague.id)
    finally:
        for http in sessions_.values():
            await http.close()


async def omnihub(env: dict[str, str], stdin: str, *args: str) -> tuple[int, str, str]:
    """Run the omnihub CLI as a process; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_user_create_cli_reads_the_password_from_stdin(
    component_env: dict[str, str], console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    name = unique("cli").lower()
    code, out, err = await omnihub(
        component_env,
        PASSWORD + "\n",
        *("user", "create", "--username", name, "--role", "agent"),
        *("--department", "finance", "--department", "after_sales", "--password-stdin"),
    )
    assert code == 0, err
    assert f"created agent {name} (departments: after_sales,finance)" in out
    row = await pool.fetchrow("SELECT * FROM console_users WHERE username = $1", name)
    assert row["password_hash"].startswith("$argon2id$")
    assert PASSWORD not in row["password_hash"]
    assert (await console.sign_in(name)).status_code == 303
    code, _, err = await omnihub(
        component_env,
        "short\n",
        *("user", "create", "--username", unique("x").lower(), "--role", "agent"),
        *("--department", "sales", "--password-stdin"),
    )
    assert code == 2 and "at least" in err
    code, out, _ = await omnihub(component_env, "", "user", "list")
    assert code == 0 and f"{name}\tagent\tafter_sales,finance\tactive" in out

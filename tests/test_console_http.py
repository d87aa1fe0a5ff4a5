"""The console over plain HTTP: sessions, cookies, CSRF, throttling, roles, queues, the CLI."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.auth import Role
from services.console import sessions, throttle
from tests.console_support import PASSWORD, ConsoleHttp, csrf_of, make_user
from tests.support import ROOT, email, eventually, phone, unique

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


async def new_customer(client: httpx.AsyncClient, *identities: dict[str, str], **extra: Any) -> str:
    """Post an interaction with ``identities``; return the customer id once it exists."""
    response = await client.post(
        "/v1/interactions",
        json={
            "identities": list(identities),
            "text": "hello",
            "provider_message_id": unique("c"),
            **extra,
        },
    )
    assert response.status_code == 202, response.text
    first = identities[0]

    async def known() -> Any:
        found = (
            await client.get(
                "/v1/customers", params={"identity": f"{first['type']}:{first['value']}"}
            )
        ).json()
        return found["customers"][0]["id"] if found["customers"] else None

    return str(await eventually(known))


async def test_search_by_name_email_phone_and_any_identity(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient, tokens: dict[Role, str]
) -> None:
    tel, visitor = phone(), unique("visitor")
    mail = f"{unique('grace')}@example.com"
    customer_id = await new_customer(
        client,
        {"type": "email", "value": mail},
        {"type": "phone", "value": tel},
        {"type": "webchat_visitor", "value": visitor},
    )
    name = f"Grace Hopper {unique('n')}"
    await client.patch(
        f"/v1/customers/{customer_id}/profile",
        json={"name": name},
        headers={"authorization": f"Bearer {tokens[Role.AGENT]}"},
    )
    await console.sign_in((await make_user(pool, "agent", ["sales"])).username)
    spaced = f"{tel[:3]} {tel[3:4]} {tel[4:6]} {tel[6:8]} {tel[8:10]} {tel[10:]}"
    for query in (mail.upper(), spaced, f"webchat_visitor:{visitor}", visitor, name[6:].lower()):
        found = await console.get("/console/search", params={"q": query})
        assert found.status_code == 303, query
        assert found.headers["location"] == f"/console/customers/{customer_id}"
    page = await console.get(f"/console/customers/{customer_id}")
    assert name in page.text and "rule new_identity" in page.text  # why each identity is linked
    none = await console.get("/console/search", params={"q": "nobody-" + unique()})
    assert none.status_code == 200 and "No customer matches" in none.text


async def test_nul_characters_get_a_readable_4xx_never_a_500(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    """PostgreSQL cannot hold U+0000: the console says so instead of failing on the database."""
    tel = phone()
    customer_id = await new_customer(client, {"type": "phone", "value": tel}, channel="sms")
    await console.sign_in((await make_user(pool, "admin")).username)
    found = await console.get("/console/search", params={"q": "Grace\x00 Hopper"})
    assert found.status_code == 400 and "NUL" in found.text
    actions = {
        "reply": {"channel": "sms", "text": "Hello\x00"},
        "log": {
            "kind": "visit",
            "direction": "inbound",
            "department": "finance",
            "occurred_at": "2026-11-20T10:30",
            "summary": "Came\x00 by",
        },
        "merge": {"other": str(uuid.uuid4()), "reason": "same\x00 person"},
        "split": {"identity": f"phone:{tel}\x00", "reason": "not the same person"},
        "delete": {"reason": "asked\x00 to"},
    }
    for action, form in actions.items():
        answer = await console.post(
            f"/console/customers/{customer_id}/{action}", {"csrf": await console.csrf(), **form}
        )
        assert answer.status_code == 422 and "NUL" in answer.text, action
    assert (await client.get(f"/v1/customers/{customer_id}")).status_code == 200
    refused = await console.sign_in("grace\x00")
    assert refused.status_code == 422 and "NUL" in refused.text


async def test_an_interaction_logged_by_hand_lands_on_the_timeline_already_done(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    customer_id = await new_customer(client, {"type": "email", "value": email("visit")})
    agent = await make_user(pool, "agent", ["finance"])
    await console.sign_in(agent.username)
    summary = unique("Came to the shop about invoice 77; gave a copy")
    logged = await console.post(
        f"/console/customers/{customer_id}/log",
        {
            "csrf": await console.csrf(),
            "kind": "visit",
            "direction": "inbound",
            "occurred_at": "2026-11-20T10:30",
            "tz_offset": "-60",  # the agent's browser is at UTC+1
            "department": "finance",
            "summary": summary,
        },
    )
    assert logged.status_code == 303, logged.text

    async def on_timeline() -> Any:
        page = (await client.get(f"/v1/customers/{customer_id}/timeline")).json()
        return next((i for i in page["items"] if i["text"] == summary), None)

    item = await eventually(on_timeline, timeout=30)
    assert (item["channel"], item["kind"], item["direction"]) == ("manual", "visit", "inbound")
    assert item["occurred_at"] == "2026-11-20T09:30:00+00:00"
    queued = await pool.fetchrow(
        "SELECT state, assignee FROM console_queue_items WHERE event_id = $1::uuid",
        item["event_id"],
    )
    assert (queued["state"], queued["assignee"]) == ("done", agent.id)
    page = await console.get(f"/console/customers/{customer_id}")
    assert f"logged by {agent.username}" in page.text
    assert '<span class="channel-icon" aria-hidden="true">✎</span>' in page.text
    assert '<span class="channel">Logged by hand</span>' in page.text
    refused = await console.post(
        f"/console/customers/{customer_id}/log",
        {
            "csrf": await console.csrf(),
            "kind": "séance",
            "direction": "inbound",
            "occurred_at": "2026-11-20T10:30",
            "department": "finance",
            "summary": "x",
        },
    )
    assert refused.status_code == 422


async def test_reply_form_disables_channels_without_consent_and_the_server_agrees(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    tel = phone()
    customer_id = await new_customer(
        client,
        {"type": "phone", "value": tel},
        channel="sms",
        consent=[{"channel": "sms", "purpose": "service", "granted": False}],
    )

    async def withdrawn() -> Any:
        return await pool.fetchval(
            "SELECT NOT granted FROM consents WHERE customer_id = $1::uuid AND channel = 'sms'",
            customer_id,
        )

    await eventually(withdrawn)
    await console.sign_in((await make_user(pool, "agent", ["triage"])).username)
    page = await console.get(f"/console/customers/{customer_id}")
    assert '<option value="sms" disabled>SMS (no consent)</option>' in page.text
    assert "withdrawn" in page.text  # the consent panel
    refused = await console.post(
        f"/console/customers/{customer_id}/reply",
        {"csrf": csrf_of(page.text), "channel": "sms", "text": "Hello?"},
    )
    assert refused.status_code == 422 and "no consent" in refused.text
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM outbound_messages WHERE customer_id = $1::uuid", customer_id
        )
        == 0
    )


async def test_merge_and_split_from_the_profile_panel(
    console: ConsoleHttp, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    mail, tel = email("m"), phone()
    first = await new_customer(client, {"type": "email", "value": mail})
    second = await new_customer(client, {"type": "phone", "value": tel}, channel="sms")
    agent = await make_user(pool, "agent", ["triage"])
    await console.sign_in(agent.username)
    merged = await console.post(
        f"/console/customers/{first}/merge",
        {"csrf": await console.csrf(), "other": second, "reason": "same person, checked ID"},
    )
    assert merged.status_code == 303 and merged.headers["location"].startswith(
        f"/console/customers/{first}"
    )
    alias = (await client.get(f"/v1/customers/{second}")).json()
    assert alias["id"] == first
    old = await console.get(f"/console/customers/{second}")
    assert old.status_code == 303 and old.headers["location"] == f"/console/customers/{first}"
    page = await console.get(f"/console/customers/{first}")
    assert f"console:{agent.username}" in page.text  # who linked the merged identity
    split = await console.post(
        f"/console/customers/{first}/split",
        {"csrf": csrf_of(page.text), "identity": f"phone:{tel}", "reason": "not the same person"},
    )
    assert split.status_code == 303
    back = (await client.get("/v1/customers", params={"identity": f"phone:{tel}"})).json()
    assert back["customers"][0]["id"] == second
    empty = await console.post(
        f"/console/customers/{first}/split", {"csrf": await console.csrf(), "reason": "none"}
    )
    assert empty.status_code == 409

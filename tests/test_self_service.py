"""Customers' self-service pages over plain HTTP: a one-time link mailed through the real
SMTP relay signs a customer in; they see their own history only, correct their details, set
consent (effective at once in routing), download their data and ask for erasure, which an
admin confirms. Sessions, cookies, CSRF and ids in URLs are checked like the console's."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.console import sessions as console_sessions
from services.selfservice import links
from services.selfservice.sessions import COOKIE
from tests.console_support import ConsoleHttp, make_user
from tests.selfservice_support import (
    ask_for_link,
    csrf,
    customer_by_email_and_phone,
    links_sent_to,
    newsletter_decision,
    open_link,
    signed_in_customer,
    timeline_rows,
)
from tests.support import email, eventually, phone, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")
_CHECKED = re.compile(r'name="([a-z_]+:[a-z]+)" value="yes"[^>]* checked')


@pytest.fixture
async def me(api_url: str) -> AsyncIterator[ConsoleHttp]:
    """A customer's browser, not signed in yet."""
    client = ConsoleHttp(api_url)
    yield client
    await client.close()


async def test_a_link_signs_the_customer_in_once_to_their_own_history_only(
    me: ConsoleHttp, client: httpx.AsyncClient, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    mail, tel = email("self"), phone()
    customer_id = await customer_by_email_and_phone(
        client, mail, tel, "Where is my order 4411?", "Also: my parcel box code is 2580"
    )
    note = await client.post(
        "/v1/interactions",
        json={
            "kind": "note",
            "identities": [{"type": "phone", "value": tel}],
            "text": "internal: customer sounded upset",
            "provider_message_id": unique("note"),
        },
    )
    assert note.status_code == 202
    other = await customer_by_email_and_phone(
        client, email("other"), phone(), "Someone else's email", "Someone else's SMS"
    )
    assert (await me.get("/me")).headers["location"] == "/me/sign-in"

    unknown = await ask_for_link(me, email("nobody"))
    known = await ask_for_link(me, mail)
    assert unknown.status_code == known.status_code == 200
    assert unknown.text == known.text  # the form tells nobody who is a customer

    async def mailed() -> Any:
        return links_sent_to(mail_relay, mail) or None

    [token] = await eventually(mailed, timeout=30)

    # the timeline keeps that a link was sent, never the link: agents cannot sign in as them
    async def link_on_timeline() -> Any:
        rows = await timeline_rows(pool, customer_id, "email")
        return [r for r in rows if r["interaction"]["direction"] == "outbound"] or None

    [sent] = await eventually(link_on_timeline, timeout=30)
    assert token not in json.dumps(sent["interaction"]) and "sign-in link" in sent["body"]
    stored = await pool.fetchval(
        "SELECT count(*) FROM self_service_links WHERE token_hash = $1", token
    )
    assert stored == 0  # only its digest is kept

    signed = await open_link(me, token)
    assert signed.status_code == 303 and signed.headers["location"] == "/me"
    [cookie] = [h for h in me.set_cookie_headers if h.startswith(COOKIE + "=")]
    assert {"httponly", "samesite=strict", "secure", "path=/me"} <= {
        p.strip().lower() for p in cookie.split(";")
    }
    page = await me.get("/me")
    assert page.status_code == 200
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "Where is my order 4411?" in page.text and "parcel box code is 2580" in page.text
    assert "internal: customer sounded upset" not in page.text
    assert "Someone else" not in page.text and "sign-in link to the self-service" in page.text

    again = ConsoleHttp(str(me.http.base_url))
    try:
        used = await open_link(again, token)
        assert used.status_code == 400 and COOKIE not in again.cookies  # single use
    finally:
        await again.close()

    # another customer's message is not there, by any id: 404, never their data
    [theirs] = await pool.fetch(
        "SELECT event_id FROM timeline WHERE customer_id = $1 LIMIT 1", other
    )
    for url in (f"/me/files/{theirs['event_id']}/1", f"/me/files/{uuid.uuid4()}/1"):
        assert (await me.get(url)).status_code == 404
    token = await csrf(me)
    refused = await me.post(
        "/me/reply", {"event_id": str(theirs["event_id"]), "text": "hi", "csrf": token}
    )
    assert refused.status_code == 404

    # a reply written here joins the email conversation it answers, on its channel
    [mine] = [
        r
        for r in await timeline_rows(pool, customer_id, "email")
        if r["interaction"]["direction"] == "inbound"
    ]
    answer = await me.post(
        "/me/reply",
        {
            "event_id": mine["interaction"]["event_id"],
            "text": "Any news? <b>4411</b>",
            "csrf": token,
        },
    )
    assert answer.status_code == 303

    async def replied() -> Any:
        rows = await timeline_rows(pool, customer_id, "email")
        return [r for r in rows if r["body"] == "Any news? <b>4411</b>"] or None

    [reply] = await eventually(replied, timeout=30)
    assert reply["interaction"]["direction"] == "inbound"
    assert reply["interaction"]["identities"][0]["value"] == mail
    assert reply["interaction"]["attributes"]["written_in"] == "self-service"
    assert "Any news? &lt;b&gt;4411&lt;/b&gt;" in (await me.get("/me")).text


async def test_sessions_are_apart_from_the_consoles_and_links_are_limited(
    me: ConsoleHttp, client: httpx.AsyncClient, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    mail, tel = email("limits"), phone()
    customer_id = await customer_by_email_and_phone(client, mail, tel, "hello", "hi")
    await signed_in_customer(me, mail_relay, mail)
    agent = await make_user(pool, "admin")
    console = ConsoleHttp(str(me.http.base_url))
    try:
        await console.sign_in(agent.username)
        # an agent's session opens no customer's pages, a customer's opens no console page
        me_cookie = me.cookies.pop(COOKIE)
        me.cookies[console_sessions.COOKIE] = console.cookies[console_sessions.COOKIE]
        assert (await me.get("/me")).headers["location"] == "/me/sign-in"
        me.cookies.pop(console_sessions.COOKIE)
        me.cookies[COOKIE] = me_cookie
        console.cookies = {COOKIE: me_cookie}
        assert (await console.get("/console/search")).status_code == 303
    finally:
        await console.close()

    # a link expires
    token = links.new_form_token()
    await pool.execute(
        "INSERT INTO self_service_links (token_hash, customer_id, sent_to, expires_at)"
        " VALUES ($1, $2, 'test', now() - interval '1 second')",
        links.digest(token),
        customer_id,
    )
    stranger = ConsoleHttp(str(me.http.base_url))
    try:
        assert (await open_link(stranger, token)).status_code == 400
        # a link is asked for at most PER_ADDRESS times an hour for one address
        for _ in range(links.PER_ADDRESS - 1):  # one was asked for above
            assert (await ask_for_link(stranger, mail)).status_code == 200
        refused = await ask_for_link(stranger, mail)
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert "Too many links" in refused.text
    finally:
        await stranger.close()


async def test_corrections_and_consent_are_events_and_apply_at_once(
    me: ConsoleHttp, client: httpx.AsyncClient, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    mail, tel = email("fix"), phone()
    customer_id = await customer_by_email_and_phone(client, mail, tel, "hello", "hi")
    await signed_in_customer(me, mail_relay, mail)
    details = {
        "name": "Zoé Martin",
        "address_lines": "12 rue des Lilas\nBâtiment B",
        "postal_code": "75011",
        "city": "Paris",
        "country": "fr",
        "preferred_channel": "sms",
        "language": "fr",
    }
    assert (await me.post("/me/details", details)).status_code == 403  # no CSRF token
    saved = await me.post("/me/details", {**details, "csrf": await csrf(me)})
    assert saved.status_code == 303 and saved.headers["location"].endswith("notice=details")
    profile = (await client.get(f"/v1/customers/{customer_id}")).json()["profile"]
    assert profile["name"] == "Zoé Martin" and profile["preferred_channel"] == "sms"
    assert profile["language"] == "fr"
    assert profile["addresses"][0]["lines"] == ["12 rue des Lilas", "Bâtiment B"]
    assert profile["addresses"][0]["country"] == "FR"
    bad = await me.post("/me/details", {**details, "language": "xx", "csrf": await csrf(me)})
    assert bad.status_code == 422 and "languages offered" in bad.text

    # marketing by email withdrawn, everything else ticked as it was
    account = (await me.get("/me/account")).text
    ticked = {name: "yes" for name in _CHECKED.findall(account)}
    del ticked["email:marketing"]  # everything is granted until said otherwise
    assert {"email:service", "sms:service", "sms:marketing"} <= set(ticked)
    withdrawn = await me.post("/me/consent", {**ticked, "csrf": await csrf(me)})
    assert withdrawn.status_code == 303
    # effective at once: stored before the answer, not when the processors catch up
    row = await pool.fetchrow(
        "SELECT granted, reason FROM consents WHERE customer_id = $1 AND channel = 'email'"
        " AND purpose = 'marketing'",
        customer_id,
    )
    assert row["granted"] is False and "self-service" in row["reason"]

    async def both_events() -> Any:
        rows = await timeline_rows(pool, customer_id, "self_service")
        return rows if len(rows) == 2 else None

    changed, consented = await eventually(both_events, timeout=30)
    assert changed["subject"] == "Contact details changed by the customer (self-service)"
    assert "Zoé Martin" in changed["body"] and "75011" in changed["body"]
    assert consented["interaction"]["consent"] == [
        {
            "channel": "email",
            "purpose": "marketing",
            "granted": False,
            "reason": "set by the customer (self-service)",
        }
    ]
    # a message marketing would get is routed elsewhere now
    decision = await newsletter_decision(client, pool, mail)
    assert decision["department"] != "marketing" and "marketing" not in decision["copies"]
    assert "marketing consent withdrawn" in decision["reason"]


async def test_export_and_an_erasure_an_admin_confirms(
    me: ConsoleHttp, client: httpx.AsyncClient, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    mail, tel = email("erase"), phone()
    customer_id = await customer_by_email_and_phone(client, mail, tel, "hello there", "hi")
    await signed_in_customer(me, mail_relay, mail)
    exported = await me.get("/me/export")
    assert exported.status_code == 200
    assert "attachment" in exported.headers["content-disposition"]
    document = exported.json()
    assert document["customer"]["id"] == str(customer_id)
    assert "hello there" in exported.text

    asked = await me.post("/me/erasure", {"reason": "moving abroad", "csrf": await csrf(me)})
    assert asked.status_code == 303
    assert "waiting for our confirmation" in (await me.get("/me/account")).text
    request_id = await pool.fetchval(
        "SELECT id FROM erasure_requests WHERE customer_id = $1 AND status = 'pending'",
        customer_id,
    )
    admin = await make_user(pool, "admin")
    agent = await make_user(pool, "agent", ["triage"])
    for user, expected in ((agent, 403), (admin, 303)):
        console = ConsoleHttp(str(me.http.base_url))
        try:
            await console.sign_in(user.username)
            admin_page = await console.get("/console/admin")
            if user is admin:
                assert "moving abroad" in admin_page.text
            token = await console.csrf()
            answer = await console.post(
                f"/console/admin/erasure-requests/{request_id}/confirm", {"csrf": token}
            )
            assert answer.status_code == expected
        finally:
            await console.close()
    status = await pool.fetchval("SELECT status FROM customers WHERE id = $1", customer_id)
    assert status == "deleted"
    assert (
        await pool.fetchval("SELECT count(*) FROM erasure_requests WHERE id = $1", request_id) == 0
    )
    # the customer's session ended with them
    assert (await me.get("/me")).headers["location"] == "/me/sign-in"

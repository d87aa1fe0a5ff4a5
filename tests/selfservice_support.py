"""Helpers of the self-service tests: a customer known by email and phone, the sign-in link
the hub mailed them (read off the suite's real SMTP relay), a signed-in customer's client."""

from __future__ import annotations

import email as email_parser
import email.policy
import re
import uuid
from typing import Any

import asyncpg
import httpx

from services.selfservice.sessions import COOKIE
from services.selfservice.signin_pages import PRE_COOKIE
from tests.console_support import ConsoleHttp, csrf_of
from tests.support import eventually, unique

_LINK = re.compile(r"/me/link/([A-Za-z0-9_-]{20,})")
_PRE = re.compile(r'name="pre_token" value="([^"]+)"')


async def customer_by_email_and_phone(
    client: httpx.AsyncClient, mail: str, tel: str, email_text: str, sms_text: str
) -> uuid.UUID:
    """A customer who wrote one email (linking their phone) and one SMS; once both are on
    their timeline."""
    for channel, identities, text in (
        ("email", [{"type": "email", "value": mail}, {"type": "phone", "value": tel}], email_text),
        ("sms", [{"type": "phone", "value": tel}], sms_text),
    ):
        answer = await client.post(
            "/v1/interactions",
            json={
                "channel": channel,
                "identities": identities,
                "text": text,
                "provider_message_id": unique(channel),
            },
        )
        assert answer.status_code == 202, answer.text

    async def both() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"phone:{tel}"})).json()
        if not found["customers"]:
            return None
        customer_id = found["customers"][0]["id"]
        page = (await client.get(f"/v1/customers/{customer_id}/timeline")).json()
        texts = {i["text"] for i in page["items"]}
        return customer_id if {email_text, sms_text} <= texts else None

    return uuid.UUID(str(await eventually(both, timeout=30)))


def links_sent_to(relay: Any, mail: str) -> list[str]:
    """The sign-in link tokens the relay received for ``mail``, oldest first."""
    tokens = []
    for _, recipients, raw in list(relay.received):
        if mail not in recipients:
            continue
        message = email_parser.message_from_bytes(raw, policy=email.policy.default)
        body = message.get_body(("plain",))
        found = _LINK.search(body.get_content() if body else "")
        if found:
            tokens.append(found[1])
    return tokens


async def ask_for_link(me: ConsoleHttp, address: str) -> httpx.Response:
    """Fill in the sign-in form."""
    form = await me.get("/me/sign-in")
    pre = _PRE.search(form.text)
    assert pre and me.cookies.get(PRE_COOKIE) == pre[1]
    return await me.post("/me/sign-in", {"address": address, "pre_token": pre[1]})


async def open_link(me: ConsoleHttp, token: str) -> httpx.Response:
    """Open the link's page and press its button."""
    landing = await me.get(f"/me/link/{token}")
    assert landing.status_code == 200
    assert landing.headers["referrer-policy"] == "no-referrer"
    pre = _PRE.search(landing.text)
    assert pre
    return await me.post("/me/link", {"token": token, "pre_token": pre[1]})


async def signed_in_customer(me: ConsoleHttp, relay: Any, mail: str) -> None:
    """Ask for a link for ``mail``, wait for it, sign in with it."""
    before = len(links_sent_to(relay, mail))
    answer = await ask_for_link(me, mail)
    assert answer.status_code == 200, answer.text

    async def arrived() -> Any:
        found = links_sent_to(relay, mail)
        return found[-1] if len(found) > before else None

    token = await eventually(arrived, timeout=30)
    signed = await open_link(me, token)
    assert signed.status_code == 303 and signed.headers["location"] == "/me"
    assert COOKIE in me.cookies


async def csrf(me: ConsoleHttp) -> str:
    """The customer session's CSRF token, read from their account page."""
    return csrf_of((await me.get("/me/account")).text)


async def timeline_rows(pool: asyncpg.Pool, customer_id: uuid.UUID, channel: str) -> list[Any]:
    """The customer's timeline rows of ``channel``."""
    return list(
        await pool.fetch(
            "SELECT subject, body, interaction FROM timeline WHERE customer_id = $1"
            " AND channel = $2 ORDER BY occurred_at",
            customer_id,
            channel,
        )
    )


async def newsletter_decision(client: httpx.AsyncClient, pool: asyncpg.Pool, mail: str) -> Any:
    """Post "Please send me your newsletter" (marketing's, by the shipped rules) from ``mail``;
    its routing decision once published to its departments' topics."""
    asked = await client.post(
        "/v1/interactions",
        json={
            "channel": "email",
            "identities": [{"type": "email", "value": mail}],
            "text": "Please send me your newsletter",
            "provider_message_id": unique("news"),
        },
    )
    assert asked.status_code == 202, asked.text
    event_id = uuid.UUID(asked.json()["event_id"])

    async def published() -> Any:
        return await pool.fetchrow(
            "SELECT department, copies, reason, customer_id FROM routing_decisions"
            " WHERE event_id = $1 AND published_at IS NOT NULL",
            event_id,
        )

    return await eventually(published, timeout=30)

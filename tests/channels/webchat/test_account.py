"""A visitor the site signed in reaches their self-service pages from the chat: the widget
asks over its socket, the hub answers a one-time token (never in a URL), the widget posts it
to /me/widget, the visitor confirms and sees their chat in their history. Anonymous visitors
get no token: only a proven identity opens a customer's history."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import pytest

from tests.channels.webchat.support import Widget, claim
from tests.console_support import ConsoleHttp
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")
_PRE = re.compile(r'name="pre_token" value="([^"]+)"')
_TOKEN = re.compile(r'name="token" value="([^"]+)"')


@pytest.fixture
def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/channels/webchat/ws"


async def test_a_signed_in_visitor_opens_their_account_from_the_chat(
    ws_url: str, api_url: str, pool: asyncpg.Pool
) -> None:
    anonymous, hello = await Widget.open(ws_url)
    try:
        assert hello["account"] is False
        await anonymous.send({"type": "account"})
        refused = await anonymous.receive()
        assert (refused["type"], refused["code"]) == ("error", "not_signed_in")
    finally:
        await anonymous.close()

    user = unique("member")
    widget, welcome = await Widget.open(ws_url, identity=claim(user, f"{user}@example.org"))
    try:
        assert welcome["account"] is True
        assert (await widget.say("q", "Where is my order 5120?"))["type"] == "ack"

        async def resolved() -> Any:  # the processors linked the signed-in id to a customer
            return await pool.fetchval(
                "SELECT customer_id FROM identities WHERE type = 'user_id' AND scope = 'acme'"
                " AND value = $1",
                user,
            )

        await eventually(resolved, timeout=30)
        await widget.send({"type": "account"})
        answer = await widget.receive()
    finally:
        await widget.close()
    assert answer["type"] == "account" and len(answer["token"]) >= 40

    browser = ConsoleHttp(api_url)
    try:
        landing = await browser.post("/me/widget", {"token": answer["token"]})
        assert landing.status_code == 200
        pre, carried = _PRE.search(landing.text), _TOKEN.search(landing.text)
        assert pre and carried and carried[1] == answer["token"]
        signed = await browser.post("/me/link", {"token": carried[1], "pre_token": pre[1]})
        assert signed.status_code == 303 and signed.headers["location"] == "/me"

        async def shown() -> Any:
            page = await browser.get("/me")
            return page if "Where is my order 5120?" in page.text else None

        await eventually(shown, timeout=30)
        again = ConsoleHttp(api_url)
        try:
            reused = await again.post("/me/widget", {"token": answer["token"]})
            pre_again = _PRE.search(reused.text)
            assert pre_again
            used = await again.post(
                "/me/link", {"token": answer["token"], "pre_token": pre_again[1]}
            )
            assert used.status_code == 400  # single use
        finally:
            await again.close()
    finally:
        await browser.close()
    kept = await pool.fetchval(
        "SELECT sent_to FROM self_service_links WHERE sent_to LIKE 'session:user_id:acme:%'"
        " ORDER BY created_at DESC LIMIT 1"
    )
    assert kept == f"session:user_id:acme:{user}"

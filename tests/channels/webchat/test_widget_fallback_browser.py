"""The widget in real Chromium behind a proxy that refuses WebSockets (as some corporate
proxies do), on a page of another origin under a strict CSP: it falls back to Server-Sent
Events + POST on its own, a visitor chats and an agent's reply shows live, the connection is
cut and the chat resumes exactly; ``data-transport="sse"`` skips the WebSocket altogether."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, expect

from tests.channels.webchat.support import hosted_page
from tests.channels.webchat.test_widget_browser import Proxy, browser, first_of

__all__ = ["browser"]  # the module's Chromium, as a fixture here too

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


class NoWebSockets(Proxy):
    """The test proxy, refusing WebSocket upgrades: it closes a connection whose request
    asks for one, before anything reaches the hub."""

    refused = 0

    def refuses(self, data: bytes) -> bool:
        if b"\r\nupgrade: websocket" in data.lower():
            self.refused += 1
            return True
        return False


@pytest.fixture
async def blocking(api_url: str) -> AsyncIterator[NoWebSockets]:
    parts = urlsplit(api_url)
    found = NoWebSockets((parts.hostname or "127.0.0.1", parts.port or 80))
    await found.start()
    yield found
    await found.stop()


@pytest.fixture
async def page_url(webchat_page_port: int, blocking: NoWebSockets) -> AsyncIterator[str]:
    """The site's page on its own origin, under a CSP allowing only the hub's script and its
    connections (WebSocket and HTTPS: the fallback is fetched); ``?transport=sse`` puts
    ``data-transport="sse"`` on the script tag."""
    hub = f"http://127.0.0.1:{blocking.port}"
    csp = (
        f"default-src 'none'; script-src {hub}; connect-src ws://127.0.0.1:{blocking.port} "
        f"{hub}; style-src 'none'; img-src 'none'; base-uri 'none'; form-action 'none'"
    )

    def render(request: web.Request) -> str:
        forced = ' data-transport="sse"' if request.query.get("transport") == "sse" else ""
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme shop</title></head>
<body><h1>Acme shop</h1>
<script src="{hub}/channels/webchat/widget.js" data-site="acme"{forced} async></script>
</body></html>"""

    async with hosted_page(webchat_page_port, render, csp) as url:
        yield url


async def transport(page: Page) -> Any:
    stored = await page.evaluate("sessionStorage.getItem('omnihub-chat:acme')")
    return json.loads(stored or "{}").get("transport")


async def test_the_widget_falls_back_on_its_own_chats_and_resumes_exactly(
    browser: Browser,
    page_url: str,
    blocking: NoWebSockets,
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url))
    await page.goto(page_url)
    await page.get_by_role("button", name="Chat with us").click()
    chat = page.get_by_role("dialog", name="Acme")
    box = chat.get_by_role("textbox", name="Your message")
    await box.fill("Hello from behind a strict proxy")
    await box.press("Enter")
    log = chat.get_by_role("log")
    mine = log.get_by_role("listitem").filter(has_text="strict proxy")
    await expect(mine).to_have_count(1)
    # two WebSockets refused, then the fallback: the message is acknowledged
    await expect(mine).to_have_class("in", timeout=30_000)
    assert blocking.refused == 2
    assert await transport(page) == "sse"

    row = await first_of(pool, page, "customer_id")

    async def reply(text: str) -> None:
        answer = await client.post(
            f"/v1/customers/{row['customer_id']}/messages",
            json={"channel": "webchat", "text": text},
        )
        assert answer.status_code == 202, answer.text

    await reply("Your parcel left the depot.")
    await expect(log.get_by_role("listitem").filter(has_text="parcel left")).to_have_count(1)

    # the network fails mid-conversation; a reply meanwhile; the widget reopens its stream
    assert blocking.cut() >= 1
    await reply("While you were away: it arrives tomorrow.")
    away = log.get_by_role("listitem").filter(has_text="it arrives tomorrow")
    await expect(away).to_have_count(1, timeout=30_000)
    await box.fill("Thanks!")
    await box.press("Enter")
    thanks = log.get_by_role("listitem").filter(has_text="Thanks!")
    await expect(thanks).to_have_count(1)
    await expect(thanks).to_have_class("in", timeout=30_000)
    await asyncio.sleep(1)  # nothing more may arrive twice
    await expect(log.get_by_role("listitem")).to_have_count(4)
    assert blocking.refused == 2, "no WebSocket tried again in this tab"

    hub = f"http://127.0.0.1:{blocking.port}/channels/webchat/"
    fallback = [url for url in asked if url.startswith(hub + "ws")]
    assert set(fallback) == {hub + "ws/stream", hub + "ws/send"}, fallback
    await context.close()


async def test_data_transport_sse_never_tries_a_websocket(
    browser: Browser, page_url: str, blocking: NoWebSockets
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(page_url + "?transport=sse")
    await page.get_by_role("button", name="Chat with us").click()
    chat = page.get_by_role("dialog", name="Acme")
    box = chat.get_by_role("textbox", name="Your message")
    await box.fill("Straight to the fallback")
    await box.press("Enter")
    mine = chat.get_by_role("log").get_by_role("listitem").filter(has_text="Straight to")
    await expect(mine).to_have_class("in", timeout=30_000)
    assert blocking.refused == 0
    await context.close()

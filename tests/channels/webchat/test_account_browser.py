"""In Chromium: a site renders its signed-in user's claim into the widget's tag (data-user-*,
no inline script, a strict CSP that lets forms post only to the hub); the visitor chats, then
"My account" opens their self-service pages in a new tab, where their chat is in their
history. The token is posted, never in a URL."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.channels.webchat.support import claim, hosted_page
from tests.console_support import CHROMIUM_ARGS, ensure_chromium
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")
expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


def member_page(hub: str, user: dict[str, Any]) -> str:
    """The shop's page for a signed-in member: the claim its backend signed, as attributes."""
    attributes = {
        "data-site": "acme",
        "data-user-id": user["id"],
        "data-user-email": user["email"],
        "data-user-expires": str(user["expires"]),
        "data-user-signature": user["signature"],
    }
    tag = " ".join(f'{name}="{html.escape(value)}"' for name, value in attributes.items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme members</title></head>
<body><h1>Welcome back</h1>
<script src="{hub}/channels/webchat/widget.js" {tag} async></script>
</body></html>"""


async def test_a_signed_in_member_opens_their_account_from_the_chat(
    browser: Browser, api_url: str, webchat_page_port: int, pool: asyncpg.Pool
) -> None:
    user_id = unique("member")
    user = claim(user_id, f"{user_id}@example.org")
    ws = api_url.replace("http://", "ws://")
    csp = (
        f"default-src 'none'; script-src {api_url}; connect-src {ws}; style-src 'none';"
        f" img-src 'none'; base-uri 'none'; form-action {api_url}"
    )

    page = hosted_page(webchat_page_port, lambda request: member_page(api_url, user), csp)
    async with page as url:
        await chat_and_open_account(browser, url, api_url, pool, user_id)


async def chat_and_open_account(
    browser: Browser, url: str, api_url: str, pool: asyncpg.Pool, user_id: str
) -> None:
    """The member chats, then opens their account from the widget."""
    context = await browser.new_context()
    try:
        shop = await context.new_page()
        urls: list[str] = []
        context.on("request", lambda request: urls.append(request.url))
        await shop.goto(url)
        await shop.get_by_role("button", name="Chat with us").click()
        box = shop.get_by_label("Your message")
        await box.fill("Has my order 8841 left?")
        await box.press("Enter")
        chat = shop.get_by_role("log")
        await expect(chat).to_contain_text("Has my order 8841 left?")

        async def resolved() -> Any:
            return await pool.fetchval(
                "SELECT customer_id FROM identities WHERE type = 'user_id' AND value = $1",
                user_id,
            )

        await eventually(resolved, timeout=30)
        async with context.expect_page() as opened:
            await shop.get_by_role("button", name="My account").click()
        account = await opened.value
        await account.get_by_role("button", name="Sign in to your account").click()
        await expect(account).to_have_url(f"{api_url}/me")
        await expect(account.locator(".history")).to_contain_text("Has my order 8841 left?")
        assert not [u for u in urls if "token" in u or "/me/link/" in u]  # never in a URL
    finally:
        await context.close()

"""A customer's self-service in real Chromium: they ask for a link, open it from the mail the
hub sent through the real SMTP relay, see their email and SMS history (markup they wrote shows
as text), withdraw marketing consent, and a message marketing would get is routed elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright, expect

from tests.console_support import CHROMIUM_ARGS, ensure_chromium
from tests.selfservice_support import (
    customer_by_email_and_phone,
    links_sent_to,
    newsletter_decision,
)
from tests.support import email, eventually, phone

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")
expect.set_options(timeout=30_000)
XSS = "<img src=x onerror=\"document.title='pwned'\">"


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for this module."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


async def test_a_customer_signs_in_by_link_and_withdraws_marketing_consent(
    browser: Browser, api_url: str, client: httpx.AsyncClient, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    mail, tel = email("web"), phone()
    email_text = f"My invoice is wrong {XSS}"
    customer_id = await customer_by_email_and_phone(
        client, mail, tel, email_text, "Running late, arriving at 5"
    )
    context = await browser.new_context(base_url=api_url)
    page = await context.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto("/me")
    await expect(page).to_have_url(f"{api_url}/me/sign-in")
    await page.get_by_label("Email address or phone number").fill(mail)
    await page.get_by_role("button", name="Send me a link").click()
    await expect(page.get_by_role("heading", name="Check your messages")).to_be_visible()

    async def mailed() -> Any:
        return links_sent_to(mail_relay, mail) or None

    [token] = await eventually(mailed, timeout=30)
    await page.goto(f"/me/link/{token}")  # the link's address, on this hub
    await page.get_by_role("button", name="Sign in to your account").click()
    await expect(page).to_have_url(f"{api_url}/me")
    history = page.locator(".history")
    await expect(history).to_contain_text("Running late, arriving at 5")
    await expect(history).to_contain_text(email_text)  # the markup as text
    assert await history.locator("img").count() == 0
    assert await page.title() != "pwned" and dialogs == []

    await page.get_by_role("link", name="Details and privacy").click()
    marketing = page.get_by_label("Email: marketing")
    await expect(marketing).to_be_checked()
    await marketing.uncheck()
    await page.get_by_role("button", name="Save my choices").click()
    await expect(page.get_by_role("status")).to_contain_text("they apply at once")
    await expect(page.get_by_label("Email: marketing")).not_to_be_checked()
    await expect(page.get_by_label("Email: service messages")).to_be_checked()
    await context.close()

    decision = await newsletter_decision(client, pool, mail)
    assert decision["customer_id"] == customer_id
    assert decision["department"] != "marketing" and "marketing" not in decision["copies"]
    assert "marketing consent withdrawn" in decision["reason"]

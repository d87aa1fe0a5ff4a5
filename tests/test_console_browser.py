"""The agent console in real headless Chromium (Debian's package, driven by Playwright).

An agent signs in, opens a queue and a customer, sees a new inbound SMS appear without a
reload, replies and sees the reply's delivery status change; untrusted text stays text; an
agent cannot reach admin actions; nothing answers without a session or a token.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.api.auth import Role
from services.console.users import User
from tests.channels.twilio import support as tw
from tests.console_support import CHROMIUM_ARGS, PASSWORD, ensure_chromium, make_user
from tests.support import email, eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "twilio_api")
expect.set_options(timeout=30_000)
XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session."""
    executable = ensure_chromium()
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def agent_api(api_url: str, tokens: dict[Role, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The API with an agent token (profiles, replies)."""
    headers = {"authorization": f"Bearer {tokens[Role.AGENT]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture
async def webhooks(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What Twilio's signed webhooks come from."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    """Where screenshots go: OMNIHUB_SCREENSHOTS_DIR (e.g. docs/screenshots), else tmp."""
    target = Path(os.environ.get("OMNIHUB_SCREENSHOTS_DIR") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    return target


async def signed_in(browser: Browser, api_url: str, user: User, start: str = "/console") -> Page:
    """A fresh browser context, signed in as ``user`` through the sign-in form."""
    context = await browser.new_context(base_url=api_url, viewport={"width": 1440, "height": 900})
    page = await context.new_page()
    await page.goto(start)
    await expect(page).to_have_url(f"{api_url}/console/sign-in?next={start.replace('/', '%2F')}")
    await page.get_by_label("Username").fill(user.username)
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator(".who")).to_contain_text(user.username)
    return page


async def texted(webhooks: httpx.AsyncClient, phone: str, body: str) -> str:
    """An inbound SMS through the signed Twilio webhook; returns its MessageSid."""
    form = tw.sms(phone, body=body)
    response = await tw.post_webhook(webhooks, "sms", form)
    assert response.status_code == 200, response.text
    return form["MessageSid"]


async def routed_department(pool: asyncpg.Pool, customer_id: str) -> str:
    """The department the customer's first message was routed to."""

    async def found() -> Any:
        return await pool.fetchval(
            "SELECT department FROM routing_decisions WHERE customer_id = $1::uuid"
            " ORDER BY routed_at LIMIT 1",
            customer_id,
        )

    return str(await eventually(found, timeout=30))


async def live(page: Page) -> None:
    """Wait until the page's live feed is connected."""
    await expect(page.locator("#live-state")).to_have_attribute("data-live", "on")


async def test_agent_sees_an_sms_arrive_live_replies_and_sees_its_status_change(
    browser: Browser,
    api_url: str,
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    agent_api: httpx.AsyncClient,
    webhooks: httpx.AsyncClient,
    twilio_api: tw.FakeTwilio,
    shots: Path,
) -> None:
    phone, mail = tw.new_phone(), email("marie")
    await texted(webhooks, phone, "Hello, my invoice 1182 was charged twice, can you refund it?")
    customer = await tw.customer_of(client, phone)
    await client.post(
        "/v1/interactions",
        json={
            "channel": "email",
            "identities": [{"type": "phone", "value": phone}, {"type": "email", "value": mail}],
            "subject": "Invoice 1182",
            "text": "Attached is the bank statement showing both payments.",
            "thread": {"id": unique("thread")},
            "attachments": [
                {"name": "statement.pdf", "content_type": "application/pdf", "size": 48213}
            ],
            "provider_message_id": unique("mail"),
        },
    )
    await agent_api.patch(
        f"/v1/customers/{customer['id']}/profile",
        json={"name": "Marie Curie", "language": "en", "preferred_channel": "sms"},
    )
    department = await routed_department(pool, customer["id"])
    agent = await make_user(pool, "agent", [department, "triage"])

    page = await signed_in(browser, api_url, agent)
    await page.goto(f"/console/queues/{department}")
    row = page.locator("table.queue tr", has_text="invoice 1182 was charged twice")
    await expect(row).to_be_visible()
    await expect(row.locator(".badge").first).to_be_visible()  # priority
    await page.screenshot(path=str(shots / "queue.png"), full_page=True)

    await row.get_by_role("link", name="Marie Curie").click()
    await expect(page.locator("#customer-name")).to_have_text("Marie Curie")
    await expect(page.locator("#timeline")).to_contain_text("statement.pdf")
    await live(page)
    await page.evaluate("window.__sameDocument = true")

    new_text = unique("Also, could you text me when the refund is done?")
    await texted(webhooks, phone, new_text)
    arrived = page.locator("li.item", has_text=new_text)
    await expect(arrived).to_be_visible()
    await expect(arrived.locator(".channel")).to_have_text("SMS")
    await expect(arrived.locator(".channel-icon")).to_have_text("✉")  # the manifest's icon
    assert await page.evaluate("window.__sameDocument === true")  # no reload happened

    await arrived.get_by_role("link", name="Reply").click()
    await expect(page.locator("#reply-channel")).to_have_value("sms")
    assert await page.locator("#reply-channel option[value=sms]").is_enabled()
    answer = unique("Refund issued today, you will see it within 3 days.")
    await page.locator("#reply-text").fill(answer)
    await page.locator("#reply-send").click()
    await expect(page.locator(".notice")).to_contain_text("Reply queued")
    await live(page)
    await page.evaluate("window.__sameDocument = true")
    sent = page.locator("li.item.outbound", has_text=answer)
    await expect(sent.locator(".delivery")).to_have_text("queued")

    async def sid() -> Any:
        done = [r for r in twilio_api.with_body(answer) if r.status == 201]
        return done[0].answer["sid"] if done else None

    message_sid = await eventually(sid, timeout=30)
    form = dict(
        tw.sample_form("message_status_delivered.form.txt"),
        MessageSid=message_sid,
        SmsSid=message_sid,
        MessageStatus="delivered",
        SmsStatus="delivered",
        To=phone,
        From=tw.FROM_NUMBER,
    )
    assert (await tw.post_webhook(webhooks, "message-status", form)).status_code == 200
    await expect(sent.locator(".delivery")).to_have_text("delivered")
    assert await page.evaluate("window.__sameDocument === true")
    await page.screenshot(path=str(shots / "timeline.png"), full_page=True)
    await page.context.close()


async def test_markup_in_messages_is_shown_as_text_and_runs_nothing(
    browser: Browser,
    api_url: str,
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
    agent_api: httpx.AsyncClient,
) -> None:
    mail = email("xss")

    async def post(text: str) -> None:
        response = await client.post(
            "/v1/interactions",
            json={
                "identities": [{"type": "email", "value": mail}],
                "subject": "<script>alert(2)</script>",
                "text": text,
                "attachments": [
                    {"name": "<svg onload=alert(3)>.pdf", "url": "javascript:alert(5)"}
                ],
                "provider_message_id": unique("xss"),
            },
        )
        assert response.status_code == 202, response.text

    await post(XSS)

    async def known() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{mail}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    customer_id = await eventually(known)
    await agent_api.patch(
        f"/v1/customers/{customer_id}/profile", json={"name": "<b onmouseover=alert(6)>Eve</b>"}
    )
    agent = await make_user(pool, "agent", ["triage"])
    page = await signed_in(browser, api_url, agent)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"/console/customers/{customer_id}")
    timeline = page.locator("#timeline")
    await expect(page.locator("#customer-name")).to_have_text("<b onmouseover=alert(6)>Eve</b>")
    await expect(timeline.get_by_text(XSS, exact=True)).to_be_visible()  # rendered by Jinja
    await expect(timeline.get_by_text("<script>alert(2)</script>").first).to_be_visible()
    await expect(timeline.get_by_text("<svg onload=alert(3)>.pdf").first).to_be_visible()

    await live(page)
    later = "<img src=x onerror=alert(4)> second"
    await post(later)
    await expect(timeline.get_by_text(later, exact=True)).to_be_visible()  # rendered by the script
    assert (
        await page.locator("#timeline img, #timeline script, #timeline svg, #timeline b").count()
        == 0
    )
    assert await page.locator("#timeline a[href^='javascript']").count() == 0
    # let any pending event handler run before looking at the dialogs
    assert await page.evaluate("new Promise(r => setTimeout(() => r(true), 0))")
    assert dialogs == []
    await page.context.close()


async def test_agent_cannot_reach_admin_actions_but_an_admin_can(
    browser: Browser, api_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    mail = email("keep")
    await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": mail}],
            "text": "Please keep me posted",
            "provider_message_id": unique("k"),
        },
    )

    async def known() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{mail}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    customer_id = await eventually(known)
    agent = await make_user(pool, "agent", ["triage"])
    page = await signed_in(browser, api_url, agent)
    admin_page = await page.goto("/console/admin")
    assert admin_page is not None and admin_page.status == 403
    await expect(page.locator(".error")).to_contain_text("Not allowed")
    await page.goto(f"/console/customers/{customer_id}")
    assert await page.locator("form[action$='/delete']").count() == 0
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    status = await page.evaluate(
        """async ([url, csrf]) => (await fetch(url, {method: 'POST',
             headers: {'content-type': 'application/x-www-form-urlencoded'},
             body: 'reason=erasure+request&csrf=' + encodeURIComponent(csrf)})).status""",
        [f"/console/customers/{customer_id}/delete", csrf],
    )
    assert status == 403
    export = await page.goto(f"/console/customers/{customer_id}/export")
    assert export is not None and export.status == 403  # exports are for supervisors and admins
    assert (await client.get(f"/v1/customers/{customer_id}")).status_code == 200
    await page.context.close()

    admin = await make_user(pool, "admin")
    page = await signed_in(browser, api_url, admin, f"/console/customers/{customer_id}")
    await page.get_by_label("Reason for deletion").fill("erasure request, ticket 4711")
    await page.get_by_role("button", name="Delete this customer").click()
    await expect(page.locator(".notice")).to_contain_text("deleted")
    assert (await client.get(f"/v1/customers/{customer_id}")).status_code == 404
    await page.goto("/console/admin")
    await expect(page.locator("table").last).to_contain_text("erasure request, ticket 4711")
    await page.context.close()


async def test_requests_without_a_session_or_a_token_are_refused(
    browser: Browser, api_url: str, pool: asyncpg.Pool
) -> None:
    some_customer = await pool.fetchval("SELECT id FROM customers WHERE status = 'active' LIMIT 1")
    context = await browser.new_context(base_url=api_url)
    page = await context.new_page()
    for path in ("/console", "/console/queues/triage", f"/console/customers/{some_customer}"):
        await page.goto(path)
        await expect(page).to_have_url(f"{api_url}/console/sign-in?next={path.replace('/', '%2F')}")
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    for path in (
        f"/console/customers/{some_customer}/timeline.json",
        f"/console/customers/{some_customer}/events",
    ):
        assert (await page.request.get(path)).status == 401
    posted = await page.request.post(
        f"/console/customers/{some_customer}/delete",
        form={"reason": "no session"},
        max_redirects=0,
    )
    assert posted.status == 303 and posted.headers["location"] == "/console/sign-in"
    for method, path in (
        ("GET", f"/v1/customers/{some_customer}"),
        ("GET", f"/v1/customers/{some_customer}/export"),
        ("DELETE", f"/v1/customers/{some_customer}"),
    ):
        answer = await page.request.fetch(path, method=method)
        assert answer.status == 401, path
    assert (
        await pool.fetchval("SELECT status FROM customers WHERE id = $1", some_customer)
    ) != "deleted"
    await context.close()

"""The widget in real Chromium, on a page of another origin under a strict CSP: one script
tag, nothing stored or fetched before the visitor opens the chat; a visitor chats and an
agent's reply shows live, as text; the connection is cut mid-conversation and the chat
resumes exactly; a reload shows the conversation once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from services.stack.ports import free_port
from tests.channels.webchat.support import PNG, hosted_page
from tests.console_support import CHROMIUM_ARGS, ensure_chromium, make_user
from tests.support import eventually, unique
from tests.test_console_browser import live, routed_department, signed_in

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


class Proxy:
    """A TCP proxy in front of the web process whose connections a test can cut."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, out: bool) -> None:
            with contextlib.suppress(OSError, ConnectionError):
                while data := await src.read(65536):
                    if out and self.refuses(data):
                        writer.transport.abort()
                        up_writer.transport.abort()
                        return
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        self._writers -= {writer, up_writer}

    def refuses(self, data: bytes) -> bool:
        """Whether to drop the connection that sends ``data`` to the hub (none, here)."""
        return False

    def cut(self) -> int:
        """Drop every connection open now (the network failing); new ones go through."""
        cut = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()
        return cut

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def host_page(hub: str, lang: str = "") -> str:
    chosen = f' data-lang="{lang}"' if lang else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Acme shop</title></head>
<body><h1>Acme shop</h1><p>Our products.</p><a href="#top">Top</a>
<script src="{hub}/channels/webchat/widget.js" data-site="acme"{chosen} async></script>
</body></html>"""


@pytest.fixture
async def proxy(api_url: str) -> AsyncIterator[Proxy]:
    parts = urlsplit(api_url)
    found = Proxy((parts.hostname or "127.0.0.1", parts.port or 80))
    await found.start()
    yield found
    await found.stop()


@pytest.fixture
async def page_url(webchat_page_port: int, proxy: Proxy) -> AsyncIterator[str]:
    """The site's page, on its own origin, under a CSP that allows only the hub's script and
    socket (no inline script or style, nothing else)."""
    hub = f"http://127.0.0.1:{proxy.port}"
    csp = (
        f"default-src 'none'; script-src {hub}; connect-src ws://127.0.0.1:{proxy.port}; "
        "style-src 'none'; img-src 'none'; base-uri 'none'; form-action 'none'"
    )

    render = lambda request: host_page(hub, request.query.get("lang", ""))  # noqa: E731
    async with hosted_page(webchat_page_port, render, csp) as url:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=ensure_chromium(), args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        await chromium.close()


async def visitor_conversation(page: Page) -> str:
    stored = await page.evaluate("localStorage.getItem('omnihub-chat:acme')")
    site, hexed, _ = json.loads(stored)["visitor"].split(".")
    return f"{site}:{uuid.UUID(hexed)}"


async def first_of(pool: asyncpg.Pool, page: Page, column: str) -> Any:
    """The timeline row (``column``) of the first message of the page's visitor, once there."""
    conversation = await visitor_conversation(page)
    return await eventually(
        lambda: pool.fetchrow(
            f"SELECT {column} FROM timeline WHERE provider_message_id LIKE $1",
            conversation + "/%",
        ),
        timeout=60,
    )


async def test_a_visitor_chats_an_agent_answers_and_a_cut_connection_resumes_exactly(
    browser: Browser,
    page_url: str,
    proxy: Proxy,
    pool: asyncpg.Pool,
    client: httpx.AsyncClient,
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    alerts: list[Any] = []
    page.on("dialog", lambda d: alerts.append(d))
    await page.goto(page_url)
    launcher = page.get_by_role("button", name="Chat with us")
    await expect(launcher).to_be_visible()
    assert await page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert await page.evaluate("typeof window.omnihubChat.toggle") == "undefined"

    await launcher.click()
    chat = page.get_by_role("dialog", name="Acme")
    await expect(chat).to_be_visible()
    box = chat.get_by_role("textbox", name="Your message")
    await expect(box).to_be_focused()
    await box.fill("Hello <b>there</b>, see https://example.org/order/7")
    await box.press("Enter")
    log = chat.get_by_role("log")
    mine = log.get_by_role("listitem").filter(has_text="see https://example.org/order/7")
    await expect(mine).to_have_text("YouHello there, see https://example.org/order/7")
    await expect(mine.get_by_role("link")).to_have_attribute("href", "https://example.org/order/7")

    row = await first_of(pool, page, "customer_id")

    async def reply(text: str) -> None:
        answer = await client.post(
            f"/v1/customers/{row['customer_id']}/messages",
            json={"channel": "webchat", "text": text},
        )
        assert answer.status_code == 202, answer.text

    await reply("<img src=x onerror=alert(1)> Your parcel left the depot.")
    await expect(log.get_by_role("listitem").filter(has_text="parcel left")).to_contain_text(
        "<img src=x onerror=alert(1)> Your parcel left the depot."
    )
    assert await page.evaluate("window.omnihubChat.root.querySelectorAll('img').length") == 0

    # the network fails mid-conversation; a reply meanwhile; the widget reconnects and resumes
    assert proxy.cut() >= 1
    await reply("While you were away: it arrives tomorrow.")
    away = log.get_by_role("listitem").filter(has_text="it arrives tomorrow")
    await expect(away).to_have_count(1, timeout=30_000)
    await box.fill("Thanks!")
    await box.press("Enter")
    await expect(log.get_by_role("listitem").filter(has_text="Thanks!")).to_have_count(1)
    await asyncio.sleep(1)  # nothing more may arrive twice
    await expect(log.get_by_role("listitem")).to_have_count(4)

    # a reload shows the conversation once, and what came after
    await page.reload()
    await page.get_by_role("button", name="Chat with us").click()
    await reply("One more thing.")
    log = page.get_by_role("dialog", name="Acme").get_by_role("log")
    await expect(log.get_by_role("listitem")).to_have_count(5, timeout=30_000)
    texts = await log.get_by_role("listitem").all_inner_texts()
    assert len(set(texts)) == 5, texts
    assert not alerts and not problems, (alerts, problems)
    await context.close()


async def test_a_chat_is_live_in_the_console_and_the_agents_reply_live_in_the_widget(
    browser: Browser, page_url: str, api_url: str, pool: asyncpg.Pool
) -> None:
    visitor_context = await browser.new_context()
    visitor = await visitor_context.new_page()
    await visitor.goto(page_url)
    await visitor.get_by_role("button", name="Chat with us").click()
    chat = visitor.get_by_role("dialog", name="Acme")
    box = chat.get_by_role("textbox", name="Your message")
    first = unique("My invoice shows the wrong address")
    await box.fill(first)
    await box.press("Enter")
    customer = (await first_of(pool, visitor, "customer_id"))["customer_id"]
    department = await routed_department(pool, str(customer))
    user = await make_user(pool, "agent", [department, "triage"])
    agent = await signed_in(browser, api_url, user)
    await agent.goto(f"/console/customers/{customer}")
    await expect(agent.locator("#timeline")).to_contain_text(first)
    await live(agent)

    second = unique("It should be 12 rue de la Paix")
    await box.fill(second)
    # the visitor types: the agent sees it, until the message arrives
    typing = agent.locator("#typing")
    await expect(typing).to_have_text("Visitor is typing\u2026", timeout=30_000)
    await expect(typing).to_have_attribute("aria-live", "polite")
    await box.press("Enter")
    arrived = agent.locator("li.item", has_text=second)
    await expect(arrived).to_be_visible()  # live, no reload
    await expect(arrived.locator(".channel")).to_have_text("Web chat")
    await expect(typing).to_have_text("")

    # markup a visitor spells with entities is stored as the text it reads as: text everywhere
    dialogs: list[Any] = []
    agent.on("dialog", lambda d: dialogs.append(d))
    visitor.on("dialog", lambda d: dialogs.append(d))
    await box.fill("&lt;img src=x onerror=alert(1)&gt; is this safe?")
    await box.press("Enter")
    spelled = "<img src=x onerror=alert(1)> is this safe?"
    await expect(agent.locator("li.item", has_text=spelled)).to_be_visible()  # live, as text
    await expect(
        chat.get_by_role("log").get_by_role("listitem").filter(has_text=spelled)
    ).to_be_visible()
    assert await agent.locator("#timeline img").count() == 0
    assert await visitor.evaluate("window.omnihubChat.root.querySelectorAll('img').length") == 0
    await agent.reload()
    await expect(agent.locator("li.item", has_text=spelled)).to_be_visible()  # server-rendered
    assert await agent.locator("#timeline img").count() == 0 and not dialogs
    await live(agent)
    arrived = agent.locator("li.item", has_text=second)

    await arrived.get_by_role("link", name="Reply").click()
    await expect(agent.locator("#reply-channel")).to_have_value("webchat")
    answer = unique("Corrected, a new invoice is on its way.")
    await agent.locator("#reply-text").fill(answer)
    # the agent types: the visitor sees who, until the reply arrives
    agent_typing = chat.locator("p.typing")
    await expect(agent_typing).to_have_text(f"{user.username} is typing\u2026", timeout=30_000)
    await agent.locator("#reply-send").click()
    await expect(agent.locator(".notice")).to_contain_text("Reply queued")
    await expect(
        chat.get_by_role("log").get_by_role("listitem").filter(has_text=answer)
    ).to_be_visible()
    await expect(agent_typing).to_have_text("")
    sent = agent.locator("li.item.outbound", has_text=answer)
    # the visitor has the chat open and in view: read
    await expect(sent.locator(".delivery")).to_have_text("read", timeout=30_000)
    await agent.context.close()
    await visitor_context.close()


async def test_a_visitor_attaches_an_image_and_a_disguised_file_is_refused(
    browser: Browser, page_url: str, pool: asyncpg.Pool
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(page_url)
    await page.get_by_role("button", name="Chat with us").click()
    chat = page.get_by_role("dialog", name="Acme")
    await expect(chat.get_by_role("button", name="Attach an image or a PDF")).to_be_visible()
    await page.locator("input[type=file]").set_input_files(
        {"name": "pixel.png", "mimeType": "image/png", "buffer": PNG}
    )
    item = chat.get_by_role("log").get_by_role("listitem").filter(has_text="pixel.png")
    await expect(item).to_be_visible()
    await expect(item).not_to_have_class(re.compile("waiting"))  # acknowledged
    interaction = (await first_of(pool, page, "interaction"))["interaction"]
    assert [a["name"] for a in interaction["attachments"]] == ["pixel.png"]

    await page.locator("input[type=file]").set_input_files(
        {"name": "invoice.pdf", "mimeType": "application/pdf", "buffer": b"MZ" + b"\0" * 64}
    )
    refused = chat.get_by_role("log").get_by_role("listitem").filter(has_text="invoice.pdf")
    await expect(refused).to_have_attribute("title", "Only images and PDFs up to 5 MB can be sent.")
    await context.close()


async def test_the_widget_speaks_the_visitors_language_wears_the_sites_colour_and_keyboard(
    browser: Browser, page_url: str
) -> None:
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(page_url + "?lang=fr")
    launcher = page.get_by_role("button", name="Discuter avec nous")
    await launcher.focus()
    await page.keyboard.press("Enter")
    chat = page.get_by_role("dialog", name="Acme")
    await expect(chat).to_be_visible()
    box = chat.get_by_role("textbox", name="Votre message")
    await expect(box).to_be_focused()
    await expect(chat.get_by_role("button", name="Envoyer")).to_be_visible()
    await expect(launcher).to_have_attribute("aria-expanded", "true")

    # the site's colour from WEBCHAT_SITES (#b0005e) once the hub welcomed the widget
    async def colour() -> bool:
        found = await launcher.evaluate("b => getComputedStyle(b).backgroundColor")
        return bool(found == "rgb(176, 0, 94)")

    await eventually(colour, timeout=20)
    await box.fill("first line")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("second line")
    await expect(box).to_have_value("first line\nsecond line")
    await page.keyboard.press("Escape")
    await expect(chat).to_be_hidden()
    await expect(launcher).to_be_focused()
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await context.close()

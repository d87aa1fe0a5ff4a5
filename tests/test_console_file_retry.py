"""An agent fetches a message's file again (issue #31), through the real Telegram webhook, the
processors and the API process: the file the Bot API would not give is shown with the reason
and a retry; the retry needs the CSRF token, says why when the platform still fails and
changes nothing then; once the platform gives the file it is stored under the message's own
blob id, downloadable, the markers cleared, the live feed told, and no row or file doubled
(a retry again, or the update delivered again, changes nothing).

Customer pages are open to every signed-in agent (departments scope queues, not customers),
so there is no agent who could not retry a file of a customer they can see."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from services.stack.embedded import Stack
from tests.channels.telegram import support as tg
from tests.console_support import ConsoleHttp, csrf_of, make_user
from tests.support import eventually, unique
from tests.test_console_browser import browser, live, signed_in

__all__ = ["browser"]  # the session's Chromium, a fixture

pytestmark = pytest.mark.usefixtures("processors", "telegram_api")

PDF = b"%PDF-1.4 the signed contract" * 40


@pytest.fixture
async def hook(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Where the Bot API's webhook requests come from: no token, only the secret header."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
async def agent(api_url: str, pool: asyncpg.Pool) -> AsyncIterator[ConsoleHttp]:
    """A signed-in agent of another department than the message's (triage)."""
    console = ConsoleHttp(api_url)
    await console.sign_in((await make_user(pool, "agent", ["finance"])).username)
    yield console
    await console.close()


def pmid(body: dict[str, Any]) -> str:
    message = body["message"]
    return f"{tg.BOT_ID}:{message['chat']['id']}:{message['message_id']}"


async def row_of(pool: asyncpg.Pool, provider_id: str) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return list(
            await conn.fetch(
                "SELECT event_id::text, customer_id::text, interaction FROM timeline"
                " WHERE channel = 'telegram' AND provider_message_id = $1",
                provider_id,
            )
        )


async def test_an_agent_fetches_a_file_again_once_the_platform_gives_it(
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    agent: ConsoleHttp,
    telegram_api: tg.FakeBotApi,
    pool: asyncpg.Pool,
    stack: Stack,
) -> None:
    file_id = unique("BQAC")
    telegram_api.files[file_id] = (f"documents/{file_id}.pdf", PDF, "application/pdf")
    telegram_api.broken.add(file_id)  # the Bot API answers 500, every attempt
    document = {
        "file_id": file_id,
        "file_unique_id": "u" + file_id[-6:],
        "file_name": "contract.pdf",
        "mime_type": "application/pdf",
        "file_size": len(PDF),
    }
    body = tg.update(caption="the signed contract", document=document)
    body["message"].pop("text", None)
    user = body["message"]["from"]["id"]
    assert (await tg.post_update(hook, body)).status_code == 200
    customer = (await tg.customer_of(client, user))["id"]
    [row] = await eventually(lambda: row_of(pool, pmid(body)), timeout=30)
    event = row["event_id"]
    assert row["interaction"]["attributes"]["media_unavailable"] == 1

    page = (await agent.get(f"/console/customers/{customer}")).text
    retry = f"/console/messages/{event}/files/1/retry"
    assert "Media could not be fetched: attachment 1: the platform did not give the file" in page
    assert f'<form class="inline refetch" action="{retry}" method="post">' in page
    assert "Fetch again: contract.pdf" in page
    csrf = csrf_of(page)

    # no CSRF token: refused, nothing fetched
    downloads = len(telegram_api.downloads)
    assert (await agent.post(retry, {})).status_code == 403
    assert (await agent.post(retry, {"csrf": "forged"})).status_code == 403
    assert len(telegram_api.downloads) == downloads

    # the platform still fails: the page says why, nothing changes
    failed = await agent.post(retry, {"csrf": csrf})
    assert failed.status_code == 502
    assert "The file could not be fetched: the platform did not give the file: HTTP 500" in (
        failed.text
    )
    assert (await row_of(pool, pmid(body)))[0]["interaction"] == row["interaction"]
    assert (await agent.get(f"/console/messages/{event}/files/1")).status_code == 404

    # the platform gives it now: stored, shown, the markers gone, the live feed told
    telegram_api.broken.discard(file_id)
    listener = await asyncpg.connect(stack.database_url)
    heard: asyncio.Queue[str] = asyncio.Queue()
    await listener.add_listener("omnihub_timeline", lambda *args: heard.put_nowait(args[3]))
    try:
        done = await agent.post(retry, {"csrf": csrf})
        assert done.status_code == 303, done.text
        assert done.headers["location"] == f"/console/customers/{customer}?notice=fetched"
        assert await asyncio.wait_for(_until(heard, f"{customer}/{event}"), 10)
    finally:
        await listener.close()
    download = await agent.get(f"/console/messages/{event}/files/1")
    assert download.status_code == 200 and download.content == PDF
    assert download.headers["content-type"] == "application/pdf"
    [stored] = await row_of(pool, pmid(body))
    [file] = stored["interaction"]["attachments"]
    assert (file["blob"], file["size"]) == (f"{event}/0", len(PDF))
    assert file["provider_id"] == file_id and file["content_type"] == "application/pdf"
    attributes = stored["interaction"]["attributes"]
    assert "media_unavailable" not in attributes and "media_error" not in attributes
    shown = (await agent.get(f"/console/customers/{customer}?notice=fetched")).text
    assert "The file was fetched and stored." in shown
    assert "Media could not be fetched" not in shown and retry not in shown
    feed = (await agent.get(f"/console/customers/{customer}/timeline.json")).json()
    [item] = [i for c in feed["conversations"] for i in c["items"] if i["event_id"] == event]
    assert item["media_unavailable"] is None and item["refetch"] == [] and item["files_key"] == "1"

    # once more: a clear no-op
    again = await agent.post(retry, {"csrf": csrf})
    assert again.status_code == 409 and "stored already" in again.text
    # the same update delivered again, then a new message behind it: still one row, one file
    assert (await tg.post_update(hook, body)).status_code == 200
    after = tg.update(user=user, text="did you get it?")
    assert (await tg.post_update(hook, after)).status_code == 200
    await eventually(lambda: row_of(pool, pmid(after)), timeout=30)
    [kept] = await row_of(pool, pmid(body))
    assert kept["interaction"] == stored["interaction"]
    assert (await agent.get(f"/console/messages/{event}/files/1")).content == PDF
    # an attachment the message does not have
    beyond = await agent.post(f"/console/messages/{event}/files/2/retry", {"csrf": csrf})
    assert beyond.status_code == 404


async def _until(heard: asyncio.Queue[str], payload: str) -> bool:
    while await heard.get() != payload:
        pass
    return True


async def test_the_retry_in_chromium_from_an_item_that_arrived_live(
    browser: Browser,
    api_url: str,
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    telegram_api: tg.FakeBotApi,
    pool: asyncpg.Pool,
) -> None:
    hello = tg.update(text="hello")
    user = hello["message"]["from"]["id"]
    assert (await tg.post_update(hook, hello)).status_code == 200
    customer = (await tg.customer_of(client, user))["id"]
    start = f"/console/customers/{customer}"
    agent = await signed_in(browser, api_url, await make_user(pool, "agent", ["sales"]), start)
    other = await signed_in(browser, api_url, await make_user(pool, "agent", ["triage"]), start)
    for page in (agent, other):
        await live(page)

    file_id = unique("BQAC")
    telegram_api.files[file_id] = (f"documents/{file_id}.pdf", PDF, "application/pdf")
    telegram_api.broken.add(file_id)
    document = {"file_id": file_id, "file_unique_id": "u1", "file_name": "invoice.pdf"}
    body = tg.update(user=user, caption="my invoice", document=document)
    body["message"].pop("text", None)
    assert (await tg.post_update(hook, body)).status_code == 200
    [row] = await eventually(lambda: row_of(pool, pmid(body)), timeout=30)
    item = agent.locator(f'li.item[data-event-id="{row["event_id"]}"]')
    # built by the page's script from timeline.json, its form carrying the session's token
    button = item.get_by_role("button", name="Fetch again: invoice.pdf")
    await expect(button).to_be_visible()
    await expect(item.locator("form.refetch input[name=csrf]")).to_have_count(1)

    telegram_api.broken.discard(file_id)
    await button.click()
    await expect(agent.locator(".notice")).to_contain_text("The file was fetched and stored.")
    link = f"/console/messages/{row['event_id']}/files/1"
    await expect(item.locator(f'a[href="{link}"]')).to_have_text(re.compile("invoice.pdf"))
    await expect(item.locator(".media-unavailable")).to_have_count(0)
    # the other agent's page redraws the item live, without a reload
    shown = other.locator(f'li.item[data-event-id="{row["event_id"]}"]')
    await expect(shown.locator(f'a[href="{link}"]')).to_be_visible()
    await expect(shown.get_by_role("button", name="Fetch again: invoice.pdf")).to_have_count(0)
    for page in (agent, other):
        await page.context.close()

"""Social conversations in the console, through the real Meta and Telegram webhooks, the
processors and the API process: the sender's handle, images inline (served as the image type
stored, never SVG), media that could not be fetched, reactions on the message they react to,
messages the company sent from the platform's own app, and the 24-hour reply window (time
left; closed: free text refused, a WhatsApp template offered and sent)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from services.api.auth import Role
from tests.channels.meta import support as meta
from tests.channels.meta.support import FakeGraph
from tests.channels.telegram import support as tg
from tests.console_support import ConsoleHttp, csrf_of, make_user
from tests.support import eventually, unique
from tests.test_console_browser import browser, live, signed_in

__all__ = ["browser"]  # the session's Chromium, a fixture

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "meta_graph", "telegram_api")

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'


@pytest.fixture
async def hook(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Where the platforms' webhook requests come from: no token, only their signatures."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


@pytest.fixture
async def agent(api_url: str, pool: asyncpg.Pool) -> AsyncIterator[ConsoleHttp]:
    """A signed-in agent."""
    console = ConsoleHttp(api_url)
    await console.sign_in((await make_user(pool, "agent", ["triage"])).username)
    yield console
    await console.close()


async def shown(
    client: httpx.AsyncClient, identity: str, provider_ids: list[str]
) -> dict[str, dict[str, Any]]:
    """The customer's timeline items by provider message id, once all of them are there."""
    customer = await meta.customer_of(client, identity)

    async def find() -> Any:
        found = {i["provider_message_id"]: i for i in await meta.items(client, customer["id"])}
        return found if all(p in found for p in provider_ids) else None

    found: dict[str, dict[str, Any]] = await eventually(find, timeout=30)
    return found


def item_html(page: str, event_id: str) -> str:
    """The markup of one timeline item of a page."""
    rest = page.split(f'data-event-id="{event_id}"')[1]
    return rest.split('<li class="item')[0].split("</ol>")[0]


def pmid(body: dict[str, Any]) -> str:
    message = body["message"]
    return f"{tg.BOT_ID}:{message['chat']['id']}:{message['message_id']}"


async def test_telegram_handle_images_inline_svg_refused_and_missing_media(
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    agent: ConsoleHttp,
    telegram_api: tg.FakeBotApi,
) -> None:
    photo = tg.update("update_reply_with_photo.json")
    user = photo["message"]["from"]["id"]
    photo["message"]["from"]["username"] = "ada_lovelace"
    photo_id = photo["message"]["photo"][-1]["file_id"] = unique("photo")
    telegram_api.files[photo_id] = (f"photos/{photo_id}.jpg", tg.PHOTO, "image/jpeg")
    svg_id = unique("svg")
    telegram_api.files[svg_id] = (f"documents/{svg_id}.svg", SVG, "image/svg+xml")
    document = {
        "file_id": svg_id,
        "file_unique_id": "u" + svg_id[-6:],
        "file_name": "logo.svg",
        "mime_type": "image/svg+xml",
        "file_size": len(SVG),
    }
    svg = tg.update(user=user, caption="our logo", document=document)
    svg["message"].pop("text", None)
    lost = dict(document, file_id=unique("gone"), file_name="lost.pdf", mime_type="application/pdf")
    missing = tg.update(user=user, caption="the contract", document=lost)
    missing["message"].pop("text", None)
    for body in (photo, svg, missing):
        assert (await tg.post_update(hook, body)).status_code == 200
    customer = await tg.customer_of(client, user)
    found = await shown(
        client, f"telegram:{tg.BOT_ID}:{user}", [pmid(photo), pmid(svg), pmid(missing)]
    )

    page = (await agent.get(f"/console/customers/{customer['id']}")).text
    assert '<span class="sender-handle">@ada_lovelace</span>' in page
    picture = found[pmid(photo)]["event_id"]
    assert f'<img src="/console/messages/{picture}/images/1"' in page
    drawing = found[pmid(svg)]["event_id"]
    assert f"/console/messages/{drawing}/images/" not in page  # an SVG is only a link
    assert f'href="/console/messages/{drawing}/files/1"' in page
    assert "Media could not be fetched: attachment 1:" in page

    image = await agent.get(f"/console/messages/{picture}/images/1")
    assert image.status_code == 200 and image.content == tg.PHOTO
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["content-disposition"] == "inline"
    assert "sandbox" in image.headers["content-security-policy"]
    refused = await agent.get(f"/console/messages/{drawing}/images/1")
    assert refused.status_code == 415 and b"<svg" not in refused.content
    download = await agent.get(f"/console/messages/{drawing}/files/1")
    assert download.headers["content-disposition"].startswith("attachment")
    # the page's own policy lets the thumbnail load from the console, and nothing else
    assert (
        "img-src 'self'" in (await agent.get("/console/search")).headers["content-security-policy"]
    )
    anonymous = await hook.get(f"/console/messages/{picture}/images/1")
    assert anonymous.status_code in (303, 401)


def wa_text(wa_id: str, wamid: str, text: str, at: float) -> dict[str, Any]:
    return {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(at)),
        "type": "text",
        "text": {"body": text},
    }


async def test_reactions_echoes_and_the_reply_window(
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    agent: ConsoleHttp,
    meta_graph: FakeGraph,
) -> None:
    # a WhatsApp customer wrote 20 h 48 min ago and reacted to their own message then
    wa_id, first = meta.new_wa_id(), "wamid." + unique("w")
    then = time.time() - (20 * 3600 + 48 * 60)
    reaction_id = "wamid." + unique("r")
    reaction = {
        "from": wa_id,
        "id": reaction_id,
        "timestamp": str(int(then) + 5),
        "type": "reaction",
        "reaction": {"message_id": first, "emoji": "❤"},
    }
    body = meta.whatsapp([wa_text(wa_id, first, "Is my order shipped?", then), reaction], wa_id)
    assert (await meta.post_webhook(hook, body)).status_code == 200
    found = await shown(client, f"whatsapp:+{wa_id}", [first, reaction_id])
    customer = await meta.customer_of(client, f"whatsapp:+{wa_id}")
    page = (await agent.get(f"/console/customers/{customer['id']}")).text
    assert re.search(r"WhatsApp</span> Reply window: 3 h 1[12] min left", page), page
    message = item_html(page, found[first]["event_id"])
    assert "<li>❤ by the customer</li>" in message
    assert f'data-event-id="{found[reaction_id]["event_id"]}"' not in page  # not a message
    feed = (await agent.get(f"/console/customers/{customer['id']}/timeline.json")).json()
    listed = {i["event_id"]: i for c in feed["conversations"] for i in c["items"]}
    assert found[reaction_id]["event_id"] not in listed
    assert listed[found[first]["event_id"]]["reactions"] == [{"emoji": "❤", "by": "the customer"}]

    # Messenger: what the page sent from Meta's own app is labelled as such
    user, mid, echo_mid = meta.new_id(), unique("m"), unique("m")
    echo = {
        "sender": {"id": meta.PAGE_ID},
        "recipient": {"id": user},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": echo_mid, "text": "Sent in the inbox", "is_echo": True, "app_id": 26},
    }
    hello = meta.text_item(user, mid, "Hello page")
    assert (await meta.post_webhook(hook, meta.messenger(hello, echo))).status_code == 200
    found = await shown(client, f"facebook:{meta.PAGE_ID}:{user}", [mid, echo_mid])
    customer = await meta.customer_of(client, f"facebook:{meta.PAGE_ID}:{user}")
    page = (await agent.get(f"/console/customers/{customer['id']}")).text
    echoed = item_html(page, found[echo_mid]["event_id"])
    assert "Sent from the Messenger app, not from the hub" in echoed
    hello_item = item_html(page, found[mid]["event_id"])
    assert "not from the hub" not in hello_item


async def test_a_closed_window_refuses_free_text_and_offers_a_template(
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    agent: ConsoleHttp,
    meta_graph: FakeGraph,
    tokens: dict[Role, str],
    pool: asyncpg.Pool,
) -> None:
    wa_id, wamid = meta.new_wa_id(), "wamid." + unique("w")
    old = time.time() - 3 * 86400
    body = meta.whatsapp([wa_text(wa_id, wamid, "Any news?", old)], wa_id)
    assert (await meta.post_webhook(hook, body)).status_code == 200
    await shown(client, f"whatsapp:+{wa_id}", [wamid])
    customer = (await meta.customer_of(client, f"whatsapp:+{wa_id}"))["id"]
    page = (await agent.get(f"/console/customers/{customer}")).text
    assert "Reply window: closed 2 days ago: WhatsApp templates only, or another channel" in page
    option = re.search(r'<option value="whatsapp"[^>]*>[^<]*</option>', page)
    assert option and "(templates only)" in option[0] and "disabled" not in option[0]
    assert 'id="reply-template"' in page and 'name="template_language"' in page

    token = csrf_of(page)
    refused = await agent.post(
        f"/console/customers/{customer}/reply",
        {"csrf": token, "channel": "whatsapp", "text": "Your parcel left today"},
    )
    assert refused.status_code == 422 and "Choose a template to send" in refused.text
    sent = await agent.post(
        f"/console/customers/{customer}/reply",
        {
            "csrf": token,
            "channel": "whatsapp",
            "text": "",
            "template": "order_update",
            "template_language": "fr",
            "template_parameters": "A-4711\nTuesday",
        },
    )
    assert sent.status_code == 303, sent.text

    async def called() -> Any:
        calls = [c for c in meta_graph.to(wa_id) if c.body.get("type") == "template"]
        return calls[0] if calls else None

    call = await eventually(called, timeout=30)
    assert call.body["template"]["name"] == "order_update"
    assert call.body["template"]["language"] == {"code": "fr"}
    parameters = call.body["template"]["components"][0]["parameters"]
    assert [p["text"] for p in parameters] == ["A-4711", "Tuesday"]

    # the API sends templates too; its free text outside the window is refused by the channel
    headers = {"authorization": f"Bearer {tokens[Role.AGENT]}"}
    async with httpx.AsyncClient(base_url=str(hook.base_url), headers=headers) as api:
        url = f"/v1/customers/{customer}/messages"
        neither = await api.post(url, json={"channel": "whatsapp"})
        assert neither.status_code == 422
        templated = await api.post(
            url,
            json={
                "channel": "whatsapp",
                "template": {"name": "order_update", "language": "fr", "parameters": ["A-4712"]},
            },
        )
        assert templated.status_code == 202, templated.text
        free = await api.post(url, json={"channel": "whatsapp", "text": "Your parcel left"})
        assert free.status_code == 202, free.text

    async def by_api() -> Any:
        calls = [c for c in meta_graph.to(wa_id) if c.body.get("type") == "template"]
        return calls[1] if len(calls) > 1 else None

    second = await eventually(by_api, timeout=30)
    assert [p["text"] for p in second.body["template"]["components"][0]["parameters"]] == ["A-4712"]

    async def refused_state() -> Any:
        return await pool.fetchval(
            "SELECT error_code FROM delivery_states WHERE command_id = $1::uuid"
            " AND state = 'refused'",
            free.json()["command_id"],
        )

    assert await eventually(refused_state, timeout=30) == "outside_24h_window"

    # Messenger past an agent's 7 days: disabled with the reason, no template to offer
    user, mid = meta.new_id(), unique("m")
    late = meta.text_item(user, mid, "hello?")
    late["timestamp"] = int((time.time() - 9 * 86400) * 1000)
    assert (await meta.post_webhook(hook, meta.messenger(late))).status_code == 200
    await shown(client, f"facebook:{meta.PAGE_ID}:{user}", [mid])
    customer = (await meta.customer_of(client, f"facebook:{meta.PAGE_ID}:{user}"))["id"]
    page = (await agent.get(f"/console/customers/{customer}")).text
    assert (
        '<option value="messenger" disabled>Messenger (outside its reply window)</option>' in page
    )
    assert "Reply window: closed 2 days ago: another channel only" in page
    assert 'id="reply-template"' not in page
    refused = await agent.post(
        f"/console/customers/{customer}/reply",
        {"csrf": csrf_of(page), "channel": "messenger", "text": "Sorry for the delay"},
    )
    assert refused.status_code == 422 and "outside its reply window" in refused.text
    assert meta_graph.to(user) == []


def png(width: int = 3, height: int = 2) -> bytes:
    """A real PNG (a browser decodes it), grey."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def test_in_chromium_an_image_and_a_reaction_arrive_live(
    hook: httpx.AsyncClient,
    client: httpx.AsyncClient,
    meta_graph: FakeGraph,
    api_url: str,
    pool: asyncpg.Pool,
    browser: Browser,
) -> None:
    wa_id, first = meta.new_wa_id(), "wamid." + unique("w")
    body = meta.whatsapp([wa_text(wa_id, first, "Look at this", time.time())], wa_id)
    assert (await meta.post_webhook(hook, body)).status_code == 200
    found = await shown(client, f"whatsapp:+{wa_id}", [first])
    customer = (await meta.customer_of(client, f"whatsapp:+{wa_id}"))["id"]
    page = await signed_in(
        browser,
        api_url,
        await make_user(pool, "agent", ["triage"]),
        f"/console/customers/{customer}",
    )
    await live(page)
    await expect(page.locator("#windows")).to_contain_text("WhatsApp Reply window: 23 h")

    media_id, photo_id = meta.new_id(), "wamid." + unique("w")
    meta_graph.media[media_id] = png()
    image = {
        "from": wa_id,
        "id": photo_id,
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": media_id, "mime_type": "image/png", "caption": "the dent"},
    }
    assert (await meta.post_webhook(hook, meta.whatsapp([image], wa_id))).status_code == 200
    thumb = page.locator("li.item a.thumb img")
    await expect(thumb).to_have_count(1)  # built by the page's script, under its CSP
    decoded = "() => [...document.querySelectorAll('a.thumb img')].some(i => i.naturalWidth === 3)"
    await page.wait_for_function(decoded, timeout=30_000)  # loaded: img-src 'self' allows it

    reaction_id = "wamid." + unique("r")
    reaction = {
        "from": wa_id,
        "id": reaction_id,
        "timestamp": str(int(time.time())),
        "type": "reaction",
        "reaction": {"message_id": first, "emoji": "❤"},
    }
    assert (await meta.post_webhook(hook, meta.whatsapp([reaction], wa_id))).status_code == 200
    message = page.locator(f'li.item[data-event-id="{found[first]["event_id"]}"]')
    await expect(message.locator("ul.reactions")).to_have_text("❤ by the customer")
    await shown(client, f"whatsapp:+{wa_id}", [reaction_id])
    await expect(page.locator("li.item")).to_have_count(2)  # the reaction is no message
    await page.context.close()

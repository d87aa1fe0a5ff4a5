"""Meta webhooks and replies through the real `omnihub run api` process, the broker, the
processors (which read the staged webhooks) and the dispatcher, against ``FakeGraph``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from tests.channels.meta import support as meta
from tests.channels.meta.contract import SAMPLES
from tests.channels.meta.support import FakeGraph, customer_of, items
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "meta_graph")


@pytest.fixture
async def hook(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What Meta's webhook requests come from: no API token, only the signature."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def entry_of(client: httpx.AsyncClient, identity: str, provider_id: str) -> dict[str, Any]:
    """The timeline item of ``provider_id`` of the customer known by ``identity``."""
    customer = await customer_of(client, identity)

    async def find() -> Any:
        found = [
            i
            for i in await items(client, customer["id"])
            if i["provider_message_id"] == provider_id
        ]
        return found[0] if found else None

    return dict(await eventually(find, timeout=30))


async def delivered(
    client: httpx.AsyncClient, customer_id: str, command_id: str, state: str
) -> dict[str, Any]:
    """The reply's timeline entry once its delivery state is ``state``."""

    async def find() -> Any:
        for i in await items(client, customer_id):
            if i.get("command_id") == command_id and i["delivery"]["state"] == state:
                return i
        return None

    return dict(await eventually(find, timeout=30))


async def reply(client: httpx.AsyncClient, customer_id: str, channel: str, text: str) -> str:
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": channel, "text": text}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["command_id"])


async def messenger_customer(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, *, ago: float = 0.0
) -> tuple[str, str]:
    """A new Messenger customer who wrote ``ago`` seconds ago: (PSID, customer id)."""
    user, mid = meta.new_id(), unique("m")
    item = meta.text_item(user, mid, "Where is my parcel?")
    item["timestamp"] = int((time.time() - ago) * 1000)
    assert (await meta.post_webhook(hook, meta.messenger(item))).status_code == 200
    await entry_of(client, f"facebook:{meta.PAGE_ID}:{user}", mid)
    return user, (await customer_of(client, f"facebook:{meta.PAGE_ID}:{user}"))["id"]


async def test_subscription_handshake_echoes_the_challenge(hook: httpx.AsyncClient) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": meta.VERIFY_TOKEN,
    }
    answer = await hook.get("/channels/meta/webhook", params=query)
    assert answer.status_code == 200
    assert answer.text == "1158201444"
    assert answer.headers["content-type"].startswith("text/plain")
    for wrong in ({"hub.verify_token": "guess"}, {"hub.mode": "unsubscribe"}):
        refused = await hook.get("/channels/meta/webhook", params={**query, **wrong})
        assert refused.status_code == 403


async def test_bad_signatures_get_403_and_nothing_reaches_the_timeline(
    hook: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    forged_user, real_user = meta.new_id(), meta.new_id()
    body = meta.messenger(meta.text_item(forged_user, unique("m"), "refund me"))
    for signature in ("", meta.sign(body, "another_secret"), meta.sign(body + b" ")):
        assert (await meta.post_webhook(hook, body, signature)).status_code == 403
    mid = unique("m")
    assert (
        await meta.post_webhook(hook, meta.messenger(meta.text_item(real_user, mid, "hi")))
    ).status_code == 200
    await entry_of(client, f"facebook:{meta.PAGE_ID}:{real_user}", mid)
    found = await client.get(
        "/v1/customers", params={"identity": f"facebook:{meta.PAGE_ID}:{forged_user}"}
    )
    assert found.json()["customers"] == []


async def test_each_sample_end_to_end(hook: httpx.AsyncClient, client: httpx.AsyncClient) -> None:
    for name in SAMPLES:
        answer = await meta.post_webhook(hook, meta.sample(name), meta.sample_signature(name))
        assert answer.status_code == 200, (name, answer.text)
    text = await entry_of(
        client, "facebook:682498302938465:1254459154682919", "mid.1457764197618:41d102a3e1ae206a38"
    )
    assert (text["channel"], text["direction"], text["text"]) == (
        "messenger",
        "inbound",
        "hello, world!",
    )
    insta = await entry_of(
        client,
        "instagram:17841405822304914:6830923373621745",
        meta.sample_mid("instagram_message.json"),
    )
    assert (insta["channel"], insta["text"]) == ("instagram", "Is this still in stock?")
    wamid = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
    whatsapp = await entry_of(client, "whatsapp:+16505551234", wamid)
    assert whatsapp["text"] == "Does it come in another color?"
    # the same person by their phone number: the WhatsApp customer is the SMS customer
    by_phone = await customer_of(client, "phone:+16505551234")
    assert by_phone["id"] == (await customer_of(client, "whatsapp:+16505551234"))["id"]


async def test_every_entry_of_a_batch_once_even_when_delivered_twice(
    hook: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    users = [meta.new_id(), meta.new_id()]
    mids = {user: [unique("m"), unique("m")] for user in users}
    entries = [
        {
            "id": meta.PAGE_ID,
            "time": 1,
            "messaging": [meta.text_item(user, mid, f"message {mid}") for mid in mids[user]],
        }
        for user in users
    ]
    body = meta.body_of({"object": "page", "entry": entries})
    for _ in range(2):
        assert (await meta.post_webhook(hook, body)).status_code == 200
    for user in users:
        for mid in mids[user]:
            await entry_of(client, f"facebook:{meta.PAGE_ID}:{user}", mid)
        customer = await customer_of(client, f"facebook:{meta.PAGE_ID}:{user}")
        # the redelivery's events have the same ids: one row each
        provider_ids = [i["provider_message_id"] for i in await items(client, customer["id"])]
        assert sorted(provider_ids) == sorted(mids[user])


async def test_media_is_fetched_and_stored(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, meta_graph: FakeGraph
) -> None:
    user, mid = meta.new_id(), unique("m")
    photo = {
        "type": "image",
        "payload": {"url": f"http://127.0.0.1:{meta_graph.port}/cdn/photo.png"},
    }
    item = meta.text_item(user, mid, "my broken screen", attachments=[photo])
    assert (await meta.post_webhook(hook, meta.messenger(item))).status_code == 200
    found = await entry_of(client, f"facebook:{meta.PAGE_ID}:{user}", mid)
    [attachment] = found["attachments"]
    assert attachment["blob"] and attachment["size"] == len(meta.PNG)
    assert attachment["content_type"] == "image/png"

    wa_id, media_id, wamid = meta.new_wa_id(), meta.new_id(), "wamid." + unique("w")
    meta_graph.media[media_id] = meta.PNG
    image = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "image",
        "image": {"id": media_id, "mime_type": "image/png", "caption": "the label"},
    }
    assert (await meta.post_webhook(hook, meta.whatsapp([image], wa_id))).status_code == 200
    found = await entry_of(client, f"whatsapp:+{wa_id}", wamid)
    [attachment] = found["attachments"]
    assert found["text"] == "the label"
    assert attachment["blob"] and attachment["size"] == len(meta.PNG)


async def test_an_echo_from_metas_app_is_outbound_once_and_ours_is_dropped(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, meta_graph: FakeGraph
) -> None:
    user, customer_id = await messenger_customer(hook, client)
    echo_mid = unique("m")
    echo = {
        "sender": {"id": meta.PAGE_ID},
        "recipient": {"id": user},
        "timestamp": int(time.time() * 1000),
        "message": {
            "mid": echo_mid,
            "text": "Sent from the Page inbox",
            "is_echo": True,
            "app_id": 263902037430900,
        },
    }
    for _ in range(2):
        assert (await meta.post_webhook(hook, meta.messenger(echo))).status_code == 200
    found = await entry_of(client, f"facebook:{meta.PAGE_ID}:{user}", echo_mid)
    assert found["direction"] == "outbound"

    text = unique("We are on it")
    command_id = await reply(client, customer_id, "messenger", text)
    sent = await delivered(client, customer_id, command_id, "sent")
    [call] = [c for c in meta_graph.to(user) if (c.body.get("message") or {}).get("text") == text]
    assert call.token == meta.PAGE_TOKEN and call.path == f"/{meta.VERSION}/{meta.PAGE_ID}/messages"
    assert call.body["messaging_type"] == "RESPONSE"
    ours = {
        "sender": {"id": meta.PAGE_ID},
        "recipient": {"id": user},
        "timestamp": int(time.time() * 1000),
        "message": {
            "mid": call.answer["message_id"],
            "text": text,
            "is_echo": True,
            "app_id": int(meta.APP_ID),
            "metadata": call.body["message"]["metadata"],
        },
    }
    assert (await meta.post_webhook(hook, meta.messenger(ours))).status_code == 200
    marker = unique("m")
    assert (
        await meta.post_webhook(hook, meta.messenger(meta.text_item(user, marker, "thanks")))
    ).status_code == 200
    await entry_of(client, f"facebook:{meta.PAGE_ID}:{user}", marker)
    rows = await items(client, customer_id)
    assert [i["provider_message_id"] for i in rows].count(echo_mid) == 1
    assert call.answer["message_id"] not in [i["provider_message_id"] for i in rows]
    assert sent["text"] == text


async def test_a_reply_outside_the_window_is_refused_before_meta(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, meta_graph: FakeGraph
) -> None:
    user, customer_id = await messenger_customer(hook, client, ago=3 * 86400)
    command_id = await reply(client, customer_id, "messenger", unique("late answer"))
    refused = await delivered(client, customer_id, command_id, "refused")
    assert refused["delivery"]["error_code"] == "outside_24h_window"
    assert "24 hours" in refused["delivery"]["error"]
    assert meta_graph.to(user) == []


async def test_whatsapp_reply_and_its_statuses(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, meta_graph: FakeGraph, pool: asyncpg.Pool
) -> None:
    wa_id, wamid = meta.new_wa_id(), "wamid." + unique("w")
    hello = {
        "from": wa_id,
        "id": wamid,
        "timestamp": str(int(time.time())),
        "type": "text",
        "text": {"body": "hello"},
    }
    meta_graph.throttled[wa_id] = 1  # the first send is throttled (130429) and retried
    assert (await meta.post_webhook(hook, meta.whatsapp([hello], wa_id))).status_code == 200
    await entry_of(client, f"whatsapp:+{wa_id}", wamid)
    customer_id = (await customer_of(client, f"whatsapp:+{wa_id}"))["id"]
    text = unique("Blue is in stock")
    command_id = await reply(client, customer_id, "whatsapp", text)
    await delivered(client, customer_id, command_id, "sent")
    calls = [c for c in meta_graph.to(wa_id) if (c.body.get("text") or {}).get("body") == text]
    assert [c.status for c in calls] == [429, 200]
    assert calls[-1].path == f"/{meta.VERSION}/{meta.PHONE_NUMBER_ID}/messages"
    assert calls[-1].token == meta.WA_TOKEN and calls[-1].body["messaging_product"] == "whatsapp"
    sent_id = calls[-1].answer["messages"][0]["id"]

    def status(state: str, **extra: Any) -> bytes:
        value = {
            "messaging_product": "whatsapp",
            "metadata": {
                "display_phone_number": "15550783881",
                "phone_number_id": meta.PHONE_NUMBER_ID,
            },
            "statuses": [
                {
                    "id": sent_id,
                    "status": state,
                    "timestamp": str(int(time.time())),
                    "recipient_id": wa_id,
                    **extra,
                }
            ],
        }
        change = {"value": value, "field": "messages"}
        return meta.body_of(
            {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
        )

    for state in ("delivered", "read"):
        assert (await meta.post_webhook(hook, status(state))).status_code == 200
    await delivered(client, customer_id, command_id, "read")


async def test_a_revoked_token_fails_the_send_and_marks_the_channel_unhealthy(
    hook: httpx.AsyncClient, client: httpx.AsyncClient, meta_graph: FakeGraph, api_url: str
) -> None:
    _, customer_id = await messenger_customer(hook, client)
    meta_graph.revoked.add(meta.PAGE_TOKEN)
    try:
        command_id = await reply(client, customer_id, "messenger", unique("answer"))
        failed = await delivered(client, customer_id, command_id, "failed")
        assert failed["delivery"]["error_code"] == "190"
        assert "expired or was revoked" in failed["delivery"]["error"]

        async def degraded() -> Any:
            async with httpx.AsyncClient(base_url=api_url) as http:
                checks = (await http.get("/readyz")).json()["checks"]
            return checks["channel:meta"].startswith("degraded") and checks

        checks = await eventually(degraded, timeout=15)
        assert "190" in checks["channel:meta"]
    finally:
        meta_graph.revoked.discard(meta.PAGE_TOKEN)

"""Telegram through the real `omnihub run api` process, the broker, the processors (which read
the staged updates and fetch media from the Bot API stand-in) and the dispatcher (which sends
through it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.cloudevents import STAGE_HEADER, header_map
from schemas.topics import DEADLETTER
from tests.channels.telegram import support as tg
from tests.channels.telegram.support import FakeBotApi, customer_of, items, post_update
from tests.support import eventually, opened_values, read_all

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "telegram_api")


@pytest.fixture
async def telegram(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What the Bot API's webhook requests come from: no API token, only the secret token."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def item(
    client: httpx.AsyncClient, user: int, pmid: str, text: str | None = None
) -> dict[str, Any]:
    """The timeline item of ``pmid`` of ``user`` once it is there (with ``text``, if given)."""
    customer = await customer_of(client, user)

    async def find() -> Any:
        for i in await items(client, customer["id"]):
            if i["provider_message_id"] == pmid and (text is None or i["text"] == text):
                return i
        return None

    return await eventually(find, timeout=30)


async def stored(pool: asyncpg.Pool, event_id: str) -> dict[str, Any]:
    """The interaction of a timeline row as the processors wrote it."""
    row = await pool.fetchval(
        "SELECT interaction FROM timeline WHERE event_id = $1::uuid", event_id
    )
    return dict(json.loads(row) if isinstance(row, str) else row)


def pmid(body: dict[str, Any]) -> str:
    message = body["message"]
    return f"{tg.BOT_ID}:{message['chat']['id']}:{message['message_id']}"


async def test_a_text_update_reaches_the_senders_timeline(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    body = tg.update(text="Hello, my parcel never arrived")
    user = body["message"]["from"]["id"]
    response = await post_update(telegram, body)
    assert response.status_code == 200, response.text
    entry = await item(client, user, pmid(body))
    assert (entry["channel"], entry["direction"], entry["kind"]) == (
        "telegram",
        "inbound",
        "message",
    )
    assert entry["text"] == "Hello, my parcel never arrived"
    assert entry["language"] == "en"
    assert (await stored(pool, entry["event_id"]))["attributes"]["sender_name"] == "Test Lastname"


async def test_a_wrong_secret_is_refused_and_nothing_is_published(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    forged, missing, good = tg.update(), tg.update(), tg.update()
    wrong = await post_update(telegram, forged, secret="hub_tg_secret_0123456789-abc_XYZ")
    none = await post_update(telegram, missing, secret=None)
    assert (wrong.status_code, none.status_code) == (403, 403)
    assert (await post_update(telegram, good)).status_code == 200
    await item(client, good["message"]["from"]["id"], pmid(good))  # the processors caught up
    for body in (forged, missing):
        query = {"identity": f"telegram:{tg.BOT_ID}:{body['message']['from']['id']}"}
        assert (await client.get("/v1/customers", params=query)).json()["customers"] == []


async def test_a_photo_with_caption_is_fetched_into_the_blob_store(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient, telegram_api: FakeBotApi, data_dir: Any
) -> None:
    body = tg.update("update_reply_with_photo.json")
    path = f"photos/file_{body['update_id']}.jpg"
    telegram_api.files["AgACAgIAAxkBAAIBVmXg"] = (path, tg.PHOTO, "image/jpeg")
    assert (await post_update(telegram, body)).status_code == 200
    entry = await item(client, body["message"]["from"]["id"], pmid(body))
    assert entry["text"] == "Hier ist das Foto"
    [photo] = entry["attachments"]
    assert photo["blob"] == f"{entry['event_id']}/0"
    assert photo["size"] == len(tg.PHOTO)
    assert path in telegram_api.downloads
    stored = data_dir / "blobs" / entry["event_id"][:2] / entry["event_id"] / "0"
    assert stored.read_bytes() == tg.PHOTO


async def test_a_retried_update_is_one_timeline_row(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    body = tg.update(text="only once please")
    user = body["message"]["from"]["id"]
    for _ in range(3):
        assert (await post_update(telegram, body)).status_code == 200
    later = tg.update(user=user, text="and this is the next one")
    assert (await post_update(telegram, later)).status_code == 200
    await item(client, user, pmid(later))
    customer = await customer_of(client, user)
    rows = [
        i for i in await items(client, customer["id"]) if i["provider_message_id"] == pmid(body)
    ]
    assert len(rows) == 1


async def test_an_edit_changes_the_original(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    body = tg.update(text="My order is 1243")
    user = body["message"]["from"]["id"]
    assert (await post_update(telegram, body)).status_code == 200
    original = await item(client, user, pmid(body))
    edit = tg.edited(body, "My order is 1234", body["message"]["date"] + 60)
    assert (await post_update(telegram, edit)).status_code == 200
    edited = await item(client, user, pmid(body), text="My order is 1234")
    assert edited["event_id"] == original["event_id"]
    assert (await stored(pool, edited["event_id"]))["attributes"]["edited_at"]
    customer = await customer_of(client, user)
    assert len(await items(client, customer["id"])) == 1  # not a message of its own


async def test_a_button_press_is_an_inbound_message_and_answered(
    telegram: httpx.AsyncClient,
    client: httpx.AsyncClient,
    telegram_api: FakeBotApi,
    pool: asyncpg.Pool,
) -> None:
    user = tg.new_user()
    press = tg.callback(user, "rating:5")
    assert (await post_update(telegram, press)).status_code == 200
    entry = await item(client, user, f"{tg.BOT_ID}:callback:{press['callback_query']['id']}")
    assert entry["text"] == "rating:5"
    assert (await stored(pool, entry["event_id"]))["attributes"]["callback_data"] == "rating:5"

    async def answered() -> bool:
        return any(
            c.method == "answerCallbackQuery"
            and c.params.get("callback_query_id") == press["callback_query"]["id"]
            for c in telegram_api.calls
        )

    await eventually(answered)


async def test_a_group_message_is_dead_lettered_with_its_reason(
    telegram: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    marker = tg.new_user()
    body = tg.in_group(tg.new_user(), f"hello group {marker}")
    assert (await post_update(telegram, body)).status_code == 200

    async def dead() -> list[Any]:
        records = await read_all(stack.bootstrap, DEADLETTER.name)
        opened = await opened_values(pool, records)
        return [r for r, v in zip(records, opened, strict=True) if v and str(marker).encode() in v]

    [record] = await eventually(dead, timeout=30)
    headers = header_map(record.headers)
    assert headers[STAGE_HEADER] == "channels/telegram"
    assert "TELEGRAM_GROUPS=ignore" in json.dumps(headers)


async def reply(client: httpx.AsyncClient, customer_id: str, text: str) -> str:
    """An agent's Telegram reply; its command id."""
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "telegram", "text": text}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["command_id"])


async def reply_entry(
    client: httpx.AsyncClient, customer_id: str, command_id: str, state: str
) -> dict[str, Any]:
    async def find() -> Any:
        for i in await items(client, customer_id):
            if i.get("command_id") == command_id and i["delivery"]["state"] == state:
                return i
        return None

    return await eventually(find, timeout=30)


async def writing_customer(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient
) -> tuple[int, str]:
    body = tg.update(text="Can someone help me?")
    user = body["message"]["from"]["id"]
    assert (await post_update(telegram, body)).status_code == 200
    return user, (await customer_of(client, user))["id"]


async def test_an_agents_reply_goes_out_through_sendmessage(
    telegram: httpx.AsyncClient,
    client: httpx.AsyncClient,
    telegram_api: FakeBotApi,
    pool: asyncpg.Pool,
) -> None:
    user, customer_id = await writing_customer(telegram, client)
    command_id = await reply(client, customer_id, "Of course, what is your order number?")
    await reply_entry(client, customer_id, command_id, "sent")
    [call] = telegram_api.to(user)
    assert call.token == tg.TOKEN and call.params["text"] == "Of course, what is your order number?"
    sent = call.answer["result"]["message_id"]
    recorded = await pool.fetchval(
        "SELECT provider_message_id FROM outbound_messages WHERE command_id = $1::uuid", command_id
    )
    assert recorded == f"{tg.BOT_ID}:{user}:{sent}"


async def test_a_customer_who_blocked_the_bot_is_failed_and_marked(
    telegram: httpx.AsyncClient,
    client: httpx.AsyncClient,
    telegram_api: FakeBotApi,
    pool: asyncpg.Pool,
) -> None:
    user, customer_id = await writing_customer(telegram, client)
    telegram_api.blocked.add(user)
    command_id = await reply(client, customer_id, "Are you still there?")
    entry = await reply_entry(client, customer_id, command_id, "failed")
    assert entry["delivery"]["error_code"] == "blocked"
    assert "blocked the bot" in entry["delivery"]["error"]
    assert len(telegram_api.to(user)) == 1  # not retried

    async def marked() -> Any:
        return await pool.fetchval(
            "SELECT undeliverable_reason FROM identities WHERE type = 'telegram'"
            " AND scope = $1 AND value = $2 AND undeliverable_since IS NOT NULL",
            tg.BOT_ID,
            str(user),
        )

    assert "blocked" in await eventually(marked, timeout=30)


async def test_retry_after_is_honoured_before_the_reply_is_sent(
    telegram: httpx.AsyncClient, client: httpx.AsyncClient, telegram_api: FakeBotApi
) -> None:
    user, customer_id = await writing_customer(telegram, client)
    telegram_api.rate_limited[user] = [1]
    command_id = await reply(client, customer_id, "Sorry for the wait")
    await reply_entry(client, customer_id, command_id, "sent")
    limited, sent = telegram_api.to(user)
    assert (limited.status, sent.status) == (429, 200)
    assert sent.at - limited.at >= 1.0

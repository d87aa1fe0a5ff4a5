"""X through the real `omnihub run api` process (X switched on in the tests' environment), the
broker, the processors (which read the staged payloads and fetch DM media from the stand-in)
and the dispatcher (which sends through it)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.cloudevents import STAGE_HEADER, header_map
from schemas.topics import DEADLETTER
from tests.channels.x import support as x
from tests.channels.x.support import FakeX, customer_of, items, post_event
from tests.support import eventually, opened_values, read_all

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "x_api")


@pytest.fixture
async def x_hook(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What X's webhook requests come from: no API token, only the signature."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def item(
    client: httpx.AsyncClient, user: str, pmid: str, direction: str = "inbound"
) -> dict[str, Any]:
    """The timeline item of ``pmid`` of ``user`` once it is there."""
    customer = await customer_of(client, user)

    async def find() -> Any:
        for i in await items(client, customer["id"]):
            if i["provider_message_id"] == pmid and i["direction"] == direction:
                return i
        return None

    return dict(await eventually(find, timeout=30))


def event_id(body: dict[str, Any]) -> str:
    return str(body["direct_message_events"][0]["id"])


def sender(body: dict[str, Any]) -> str:
    return str(body["direct_message_events"][0]["message_create"]["sender_id"])


async def stored(pool: asyncpg.Pool, event: str) -> dict[str, Any]:
    """The interaction of a timeline row as the processors wrote it."""
    row = await pool.fetchval("SELECT interaction FROM timeline WHERE event_id = $1::uuid", event)
    return dict(json.loads(row) if isinstance(row, str) else row)


async def test_the_crc_challenge_is_answered(x_hook: httpx.AsyncClient) -> None:
    sample = (x.SAMPLES / "crc_check.http").read_text()
    query = sample.split(" ", 2)[1].split("?", 1)[1]
    answer = await x_hook.get(f"{x.WEBHOOK}?{query}")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json() == {
        "response_token": "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="
    }
    assert (await x_hook.get(x.WEBHOOK)).status_code == 403  # no crc_token


async def test_the_dm_sample_reaches_the_senders_timeline(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    """The sample byte for byte, with its signature from signatures.json."""
    response = await x_hook.post(
        x.WEBHOOK,
        content=x.sample_bytes("aaa_direct_message_events.json"),
        headers={"content-type": "application/json", x.HEADER: x.sample_signature()},
    )
    assert response.status_code == 200, response.text
    entry = await item(client, x.CUSTOMER, "954491830116155396")
    assert (entry["channel"], entry["kind"], entry["text"]) == ("x", "message", "Hello World!")
    attributes = (await stored(pool, entry["event_id"]))["attributes"]
    assert attributes == {"sender_name": "Jordan Brinks", "username": "furiouscamper"}


async def test_a_bad_signature_is_refused_and_nothing_published(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    forged, missing, good = x.dm(), x.dm(), x.dm()
    _, other = x.signed(forged, secret="not-the-consumer-secret")
    assert (await post_event(x_hook, forged, other)).status_code == 403
    assert (await post_event(x_hook, missing, None)).status_code == 403
    assert (await post_event(x_hook, good)).status_code == 200
    await item(client, sender(good), event_id(good))  # the processors caught up
    for body in (forged, missing):
        query = {"identity": f"x:{x.ACCOUNT}:{sender(body)}"}
        assert (await client.get("/v1/customers", params=query)).json()["customers"] == []


async def test_a_redelivery_is_one_timeline_row(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    user = x.new_user()
    body = x.dm(user, "only once please")
    for _ in range(3):
        assert (await post_event(x_hook, body)).status_code == 200
    later = x.dm(user, "and this is the next one")
    assert (await post_event(x_hook, later)).status_code == 200
    await item(client, user, event_id(later))
    customer = await customer_of(client, user)
    rows = [
        i for i in await items(client, customer["id"]) if i["provider_message_id"] == event_id(body)
    ]
    assert len(rows) == 1


async def test_the_accounts_own_dm_is_recorded_once_as_outbound(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    user = x.new_user()
    first = x.dm(user, "Hi, this is our support")
    assert (await post_event(x_hook, first)).status_code == 200
    own = x.dm(user, "Written in X's own app", own=True)
    for _ in range(2):
        assert (await post_event(x_hook, own)).status_code == 200
    entry = await item(client, user, event_id(own), direction="outbound")
    assert entry["text"] == "Written in X's own app"
    assert (await stored(pool, entry["event_id"]))["attributes"]["sent_from"] == "x"
    customer = await customer_of(client, user)
    rows = [
        i for i in await items(client, customer["id"]) if i["provider_message_id"] == event_id(own)
    ]
    assert len(rows) == 1


async def test_a_photo_is_fetched_into_the_blob_store(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient, x_api: FakeX, x_api_port: int
) -> None:
    user = x.new_user()
    path = f"/ton/1.1/ton/data/dm/{user}/1/photo.jpg"
    x_api.media[path] = (x.PHOTO, "image/jpeg")
    body = x.dm(user, "my receipt https://t.co/abcDEF123")
    body["direct_message_events"][0]["message_create"]["message_data"]["attachment"] = {
        "type": "media",
        "media": x.photo(f"http://127.0.0.1:{x_api_port}{path}"),
    }
    assert (await post_event(x_hook, body)).status_code == 200
    entry = await item(client, user, event_id(body))
    assert entry["text"] == "my receipt"
    [photo] = entry["attachments"]
    assert photo["size"] == len(x.PHOTO)
    assert path in x_api.downloads


async def test_an_unknown_event_type_is_dead_lettered_with_its_reason(
    x_hook: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    marker = x.new_id()
    body = {"for_user_id": x.ACCOUNT, "favorite_events": [{"id": marker}]}
    assert (await post_event(x_hook, body)).status_code == 200

    async def dead() -> list[Any]:
        records = await read_all(stack.bootstrap, DEADLETTER.name)
        opened = await opened_values(pool, records)
        return [r for r, v in zip(records, opened, strict=True) if v and marker.encode() in v]

    [record] = await eventually(dead, timeout=30)
    headers = header_map(record.headers)
    assert headers[STAGE_HEADER] == "channels/x"
    assert "favorite_events" in json.dumps(headers)


async def reply(client: httpx.AsyncClient, customer_id: str, text: str) -> str:
    """An agent's X reply; its command id."""
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "x", "text": text}
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

    return dict(await eventually(find, timeout=30))


async def test_an_agents_reply_is_sent_echoed_once_and_read(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient, x_api: FakeX, pool: asyncpg.Pool
) -> None:
    user = x.new_user()
    assert (await post_event(x_hook, x.dm(user, "Where is my order?"))).status_code == 200
    customer = await customer_of(client, user)
    command_id = await reply(client, customer["id"], "It left our warehouse today")
    await reply_entry(client, customer["id"], command_id, "sent")
    [call] = x_api.to(user)
    assert call.auth.startswith("OAuth ") and call.body == {"text": "It left our warehouse today"}
    sent = call.answer["data"]["dm_event_id"]
    recorded = await pool.fetchval(
        "SELECT provider_message_id FROM outbound_messages WHERE command_id = $1::uuid", command_id
    )
    assert recorded == sent
    # X echoes the DM to the webhook: through the hub's app, and (as if X_APP_ID were unset)
    # through another: neither becomes a second row
    for app in (x.APP_ID, x.OTHER_APP):
        echo = x.dm(user, "It left our warehouse today", event_id=sent, own=True, app=app)
        assert (await post_event(x_hook, echo)).status_code == 200
    # the customer reads it: the reply's state becomes read
    assert (await post_event(x_hook, x.read_event(user, sent))).status_code == 200
    await reply_entry(client, customer["id"], command_id, "read")
    later = x.dm(user, "Thanks!")
    assert (await post_event(x_hook, later)).status_code == 200
    await item(client, user, event_id(later))  # the processors are past the echoes
    outbound = [i for i in await items(client, customer["id"]) if i["direction"] == "outbound"]
    assert len(outbound) == 1


async def test_a_user_who_takes_no_dms_fails_the_reply_with_xs_words(
    x_hook: httpx.AsyncClient, client: httpx.AsyncClient, x_api: FakeX
) -> None:
    user = x.new_user()
    assert (await post_event(x_hook, x.dm(user, "Hello?"))).status_code == 200
    customer = await customer_of(client, user)
    x_api.closed.add(user)
    command_id = await reply(client, customer["id"], "Hello, how can we help?")
    entry = await reply_entry(client, customer["id"], command_id, "failed")
    assert entry["delivery"]["error_code"] == "forbidden"
    assert "not allowed to send Direct Messages" in entry["delivery"]["error"]
    assert len(x_api.to(user)) == 1

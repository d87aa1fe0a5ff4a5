"""The widget's WebSocket against the suite's real `omnihub run api`, processors and
dispatcher: a visitor's message is acknowledged once on the broker and numbered; an agent's
reply reaches the open widget; a widget that reconnects gets what it missed, each message
once; origins, signed-in users and visitor ids are checked."""

from __future__ import annotations

import base64
import gzip
import re
import uuid
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from channels.base import FileBlobStore
from services.api.auth import Role
from tests.channels.webchat.eicar_scanner import EICAR
from tests.channels.webchat.support import PNG, Widget, claim
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


@pytest.fixture
def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/channels/webchat/ws"


async def row_of(pool: asyncpg.Pool, provider_message_id: str) -> Any:
    async def find() -> Any:
        return await pool.fetchrow(
            "SELECT event_id, customer_id, body, channel FROM timeline"
            " WHERE provider_message_id = $1",
            provider_message_id,
        )

    return await eventually(find, timeout=60)


def conversation(welcome: dict[str, Any]) -> str:
    site, visitor, _ = welcome["visitor"].split(".")
    return f"{site}:{uuid.UUID(visitor)}"


async def reply(client: httpx.AsyncClient, customer_id: Any, text: str) -> str:
    answer = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "webchat", "text": text}
    )
    assert answer.status_code == 202, answer.text
    command_id: str = answer.json()["command_id"]
    return command_id


async def test_a_message_is_acknowledged_numbered_stored_as_text_and_said_once(
    ws_url: str, pool: asyncpg.Pool
) -> None:
    widget, welcome = await Widget.open(ws_url)
    try:
        assert welcome["type"] == "welcome" and welcome["name"] == "Acme"
        ack = await widget.say("m1", "<b>Hello</b> <script>alert(1)</script>a < b &amp; c")
        assert ack == {"type": "ack", "client_id": "m1", "seq": 1, "text": "Hello a < b & c"}
        again = await widget.say("m1", "<b>Hello</b> <script>alert(1)</script>a < b &amp; c")
        assert again == ack, "a retry is the same message"
    finally:
        await widget.close()
    row = await row_of(pool, f"{conversation(welcome)}/m1")
    assert row["channel"] == "webchat"
    assert row["body"] == "Hello a < b & c"
    count = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE provider_message_id = $1",
        f"{conversation(welcome)}/m1",
    )
    assert count == 1


async def test_a_reply_reaches_the_open_widget_and_a_reconnect_resumes_exactly(
    ws_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    widget, welcome = await Widget.open(ws_url)
    token = welcome["visitor"]
    try:
        assert (await widget.say("q", "Where is my parcel?"))["seq"] == 1
        customer = (await row_of(pool, f"{conversation(welcome)}/q"))["customer_id"]
        command = await reply(client, customer, "It left the depot this morning.")
        live = await widget.receive()
        assert live["type"] == "entry" and live["seq"] == 2
        assert live["entry"]["id"] == command and live["entry"]["direction"] == "outbound"
        assert live["entry"]["text"] == "It left the depot this morning."
    finally:
        await widget.close()

    # the connection is gone; two replies meanwhile
    missed = [await reply(client, customer, f"Update {n}") for n in (1, 2)]

    async def logged() -> bool:
        found = await pool.fetchval(
            "SELECT count(*) FROM conversation_log WHERE conversation = $1",
            conversation(welcome),
        )
        return bool(found == 4)

    await eventually(logged, timeout=30)
    widget, again = await Widget.open(ws_url, visitor=token, after=2)
    try:
        assert again["visitor"] == token, "the same visitor, the same conversation"
        replayed = [await widget.receive(), await widget.receive()]
        assert [f["seq"] for f in replayed] == [3, 4]
        assert [f["entry"]["id"] for f in replayed] == missed
        later = await reply(client, customer, "Delivered.")
        after = await widget.receive()
        assert (after["seq"], after["entry"]["id"]) == (5, later)
    finally:
        await widget.close()

    widget, _ = await Widget.open(ws_url, visitor=token, after=0)
    try:
        everything = [await widget.receive() for _ in range(5)]
        assert [f["seq"] for f in everything] == [1, 2, 3, 4, 5]
        assert everything[0]["entry"]["direction"] == "inbound"
        assert everything[0]["entry"]["client_id"] == "q"
    finally:
        await widget.close()


async def closed_with(ws_url: str, **hello: Any) -> int:
    """The close code the hub answers a hello with."""
    try:
        widget, answer = await Widget.open(ws_url, **hello)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None
        return exc.rcvd.code
    await widget.close()
    raise AssertionError(f"accepted: {answer}")


async def test_the_page_origin_and_a_missing_forged_or_expired_sign_in_are_refused(
    ws_url: str,
) -> None:
    assert await closed_with(ws_url, origin="https://evil.example") == 4403
    assert await closed_with(ws_url, site="nosuch") == 4403
    assert await closed_with(ws_url, site="members") == 4401
    forged = {**claim("u1", "jane@example.org"), "email": "boss@example.org"}
    assert await closed_with(ws_url, identity=forged) == 4401
    assert await closed_with(ws_url, identity=claim("u1", secret="x" * 40)) == 4401
    assert await closed_with(ws_url, identity=claim("u1", ttl=-5)) == 4401
    widget, welcome = await Widget.open(ws_url, site="members", identity=claim("u1"))
    await widget.close()
    assert welcome["type"] == "welcome"


async def test_an_edited_visitor_id_gets_a_conversation_of_its_own(ws_url: str) -> None:
    widget, welcome = await Widget.open(ws_url)
    await widget.close()
    site, _, mac = welcome["visitor"].split(".")
    edited = f"{site}.{uuid.uuid4().hex}.{mac}"
    widget, other = await Widget.open(ws_url, visitor=edited)
    await widget.close()
    assert other["visitor"] not in (edited, welcome["visitor"])


async def test_a_signed_in_visitor_joins_the_known_customer_an_anonymous_one_does_not(
    ws_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    address = f"{unique('known')}@example.org"
    posted = await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": address}],
            "text": "my order",
            "provider_message_id": unique("known"),
        },
    )
    assert posted.status_code == 202, posted.text
    known = await eventually(
        lambda: pool.fetchval("SELECT customer_id FROM identities WHERE value = $1", address),
        timeout=60,
    )
    signed, welcome = await Widget.open(ws_url, identity=claim(unique("user"), address))
    anonymous, other = await Widget.open(ws_url)
    try:
        await signed.say("s", "it is me")
        await anonymous.say("a", f"I am {address}, honest")
    finally:
        await signed.close()
        await anonymous.close()
    assert (await row_of(pool, f"{conversation(welcome)}/s"))["customer_id"] == known
    assert (await row_of(pool, f"{conversation(other)}/a"))["customer_id"] != known


async def test_erasure_deletes_what_the_widget_was_shown(
    ws_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient, api_url: str, tokens: Any
) -> None:
    widget, welcome = await Widget.open(ws_url)
    try:
        await widget.say("e", "please forget me")
        customer = (await row_of(pool, f"{conversation(welcome)}/e"))["customer_id"]
        await reply(client, customer, "Understood.")
        assert (await widget.receive())["seq"] == 2
    finally:
        await widget.close()
    headers = {"authorization": f"Bearer {tokens[Role.ADMIN]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as admin:
        deleted = await admin.request(
            "DELETE", f"/v1/customers/{customer}", json={"reason": "erasure request"}
        )
    assert deleted.status_code == 200, deleted.text
    for table in ("conversation_log", "conversation_heads"):
        left = await pool.fetchval(
            f"SELECT count(*) FROM {table} WHERE conversation = $1", conversation(welcome)
        )
        assert left == 0, table
    widget, _ = await Widget.open(ws_url, visitor=welcome["visitor"])
    try:
        ack = await widget.say("after", "hello again")
        assert ack["seq"] == 1, "a conversation started afresh"
    finally:
        await widget.close()


async def test_the_widget_is_one_small_script_and_the_chat_is_versioned_and_cached(
    api_url: str,
) -> None:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        loader = await http.get("/channels/webchat/widget.js")
        assert loader.status_code == 200
        assert loader.headers["content-type"].startswith("text/javascript")
        assert loader.headers["cache-control"] == "public, max-age=300"
        assert loader.headers["x-content-type-options"] == "nosniff"
        assert loader.headers["cross-origin-resource-policy"] == "cross-origin"
        assert len(gzip.compress(loader.content, 9)) < 10_000
        assert "chat.js?v=${chat.version}" in loader.text
        [version] = re.findall(r'version: "([0-9a-f]{16})"', loader.text)
        chat = await http.get(f"/channels/webchat/chat.js?v={version}")
        assert chat.headers["cache-control"] == "public, max-age=31536000, immutable"
        again = await http.get(
            "/channels/webchat/widget.js", headers={"if-none-match": loader.headers["etag"]}
        )
        assert again.status_code == 304 and not again.content
        assert (await http.get("/channels/webchat/nothing.js")).status_code == 404
        assert (await http.get("/channels/webchat/../config.py")).status_code == 404


async def test_a_visitor_writing_too_fast_is_slowed_others_behind_the_same_address_are_not(
    ws_url: str,
) -> None:
    fast, _ = await Widget.open(ws_url)
    other, _ = await Widget.open(ws_url)
    try:
        answers = [await fast.say(f"f{n}", f"message {n}") for n in range(11)]
        assert [a["type"] for a in answers[:10]] == ["ack"] * 10  # WEBCHAT_MESSAGES_BURST
        slowed = answers[10]
        assert slowed["type"] == "error" and slowed["code"] == "slow_down"
        assert slowed["client_id"] == "f10" and 0 < slowed["retry_after"] <= 2.0
        assert (await other.say("o1", "me too"))["type"] == "ack", "the same address, not slowed"
    finally:
        await fast.close()
        await other.close()


async def test_an_address_opening_chats_without_end_is_told_to_wait(ws_url: str) -> None:
    codes = []
    for _ in range(80):  # WEBCHAT_VISITORS_BURST is 60, one more a second
        try:
            widget, _ = await Widget.open(ws_url, site="flood")
        except ConnectionClosed as exc:
            assert exc.rcvd is not None
            codes.append(exc.rcvd.code)
            continue
        await widget.close()
        codes.append(1000)
    assert 4429 in codes and codes[0] == 1000


async def test_replies_the_visitor_saw_are_read(
    ws_url: str, pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    widget, welcome = await Widget.open(ws_url)
    try:
        await widget.say("r", "hello")
        customer = (await row_of(pool, f"{conversation(welcome)}/r"))["customer_id"]
        first = await reply(client, customer, "first answer")
        assert (await widget.receive())["seq"] == 2
        second = await reply(client, customer, "second answer")
        assert (await widget.receive())["seq"] == 3
        await widget.send({"type": "read", "seq": 2})  # the second one not seen yet

        async def states() -> dict[str, set[str]]:
            rows = await pool.fetch(
                "SELECT command_id::text AS id, state FROM delivery_states"
                " WHERE command_id = ANY($1::uuid[])",
                [first, second],
            )
            found: dict[str, set[str]] = {first: set(), second: set()}
            for row in rows:
                found[row["id"]].add(row["state"])
            return found

        await eventually(lambda: _has(states, first, "read"), timeout=30)
        assert "read" not in (await states())[second]
        await widget.send({"type": "read", "seq": 3})
        await eventually(lambda: _has(states, second, "read"), timeout=30)
    finally:
        await widget.close()


async def _has(states: Any, command: str, state: str) -> bool:
    return state in (await states())[command]


async def test_too_long_messages_and_oversized_frames_are_refused_readably(ws_url: str) -> None:
    widget, _ = await Widget.open(ws_url)
    try:
        long = await widget.say("l", "x" * 4001)  # WEBCHAT_MAX_MESSAGE_CHARS
        assert (long["type"], long["code"], long["client_id"]) == ("error", "too_long", "l")
        huge = await widget.say("h", "x" * 30_000)  # refused before it is parsed
        assert (huge["type"], huge["code"]) == ("error", "too_long")
        only_markup = await widget.say("m", "<img src=x onerror=alert(1)>")
        assert (only_markup["type"], only_markup["code"]) == ("error", "empty")
        assert (await widget.say("ok", "still here"))["type"] == "ack"
    finally:
        await widget.close()


async def test_a_visitor_sends_an_image_only_images_and_pdfs_within_the_limit(
    ws_url: str, pool: asyncpg.Pool, data_dir: Any
) -> None:
    widget, welcome = await Widget.open(ws_url)

    async def send_file(client_id: str, name: str, kind: str, data: bytes) -> dict[str, Any]:
        await widget.send(
            {
                "type": "file",
                "client_id": client_id,
                "name": name,
                "content_type": kind,
                "data": base64.b64encode(data).decode(),
            }
        )
        return await widget.receive()

    try:
        ack = await send_file("img", "../../etc/photo.png", "image/png", PNG)
        assert (ack["type"], ack["seq"]) == ("ack", 1)
        disguised = await send_file("exe", "invoice.pdf", "application/pdf", b"MZ\x90\x00" * 64)
        assert (disguised["type"], disguised["code"]) == ("error", "file_type")
        # the scan hook (WEBCHAT_SCAN_COMMAND, the suite's scanner) refuses the EICAR test file
        infected = await send_file("virus", "report.pdf", "application/pdf", b"%PDF-1.4\n" + EICAR)
        assert (infected["type"], infected["code"]) == ("error", "infected")
        big = await send_file("big", "scan.pdf", "application/pdf", b"%PDF-" + b"0" * 6_000_000)
        assert (big["type"], big["code"]) == ("error", "too_long")  # beyond any frame it may send
    finally:
        await widget.close()
    row = await row_of(pool, f"{conversation(welcome)}/img")
    interaction = await pool.fetchval(
        "SELECT interaction FROM timeline WHERE event_id = $1", row["event_id"]
    )
    [attachment] = interaction["attachments"]
    assert attachment["name"] == "_.._etc_photo.png"  # no directories, no leading dot
    assert (attachment["content_type"], attachment["size"]) == ("image/png", len(PNG))
    assert await FileBlobStore(data_dir / "blobs").get(attachment["blob"]) == PNG
    refused = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE provider_message_id = $1",
        f"{conversation(welcome)}/virus",
    )
    assert refused == 0

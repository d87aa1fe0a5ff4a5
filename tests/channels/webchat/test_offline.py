"""No agent present: the widget says so and takes an address; an agent's later reply that
the visitor did not see in the chat goes to that address by email (the suite's real SMTP
relay), and the visitor's email answer lands in the same conversation, on the same customer.
An address typed into the chat is never an identity: it links no history."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import pytest

from channels.base import FileBlobStore
from channels.email import EmailAdapter
from services.api.auth import Role
from services.bus.producer import Producer
from services.console.timeline import load
from tests.channels.email.support import mail, settings
from tests.channels.webchat.support import Widget
from tests.console_support import ConsoleHttp, make_user
from tests.support import eventually, sealing_publisher, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


@pytest.fixture
def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/channels/webchat/ws"


@pytest.fixture
async def email_adapter(
    stack: Any, producer: Producer, data_dir: Path, tmp_path: Path
) -> AsyncIterator[EmailAdapter]:
    """The email channel receiving the visitor's answer (SMTP, in-process, the hub's key)."""
    adapter = EmailAdapter(settings(tmp_path))
    adapter.attach(
        await sealing_publisher(producer, stack.database_url),
        blobs=FileBlobStore(data_dir / "blobs"),
    )
    await adapter.start()
    yield adapter
    await adapter.stop()


async def test_offline_the_reply_goes_by_email_and_the_answer_comes_back(
    ws_url: str,
    api_url: str,
    pool: asyncpg.Pool,
    tokens: dict[Role, str],
    mail_relay: Any,
    email_adapter: EmailAdapter,
) -> None:
    # nobody's console is open (other tests' agents have long gone quiet, as far as this knows)
    await pool.execute("UPDATE console_sessions SET last_seen = now() - interval '1 hour'")
    widget, welcome = await Widget.open(ws_url)
    address = f"{unique('gone')}@example.org"
    try:
        assert welcome["online"] is False
        assert (await widget.say("q1", "Do you ship to Lisbon?"))["type"] == "ack"
        await widget.send({"type": "contact", "client_id": "c0", "address": "12345"})
        refused = await widget.receive()
        assert refused["type"] == "error" and refused["code"] == "bad_address"
        await widget.send({"type": "contact", "client_id": "c1", "address": address.upper()})
        saved = await widget.receive()
        assert saved["type"] == "ack" and saved["contact"] == address  # normalised
    finally:
        await widget.close()  # the visitor leaves

    site, visitor, _ = welcome["visitor"].split(".")

    async def question() -> Any:
        return await pool.fetchrow(
            "SELECT event_id, customer_id FROM timeline WHERE provider_message_id = $1",
            f"{site}:{uuid.UUID(visitor)}/q1",
        )

    asked = await eventually(question, timeout=30)
    customer_id = asked["customer_id"]
    linked = await pool.fetchval(
        "SELECT count(*) FROM identities WHERE type = 'email' AND value = $1", address
    )
    assert linked == 0  # typed, not proven: no identity

    # an agent comes online: a new visitor is told so
    agent = ConsoleHttp(api_url)
    try:
        await agent.sign_in((await make_user(pool, "agent", ["sales"])).username)
        assert (await agent.get("/console/presence.json")).status_code == 204
        other, hello = await Widget.open(ws_url)
        await other.close()
        assert hello["online"] is True
    finally:
        await agent.close()

    headers = {"authorization": f"Bearer {tokens[Role.AGENT]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as api:
        answer = await api.post(
            f"/v1/customers/{customer_id}/messages",
            json={
                "channel": "webchat",
                "text": "Yes, we ship to Lisbon in 3 days.",
                "in_reply_to": str(asked["event_id"]),  # as the console answers an item
            },
        )
        assert answer.status_code == 202, answer.text

    async def mailed() -> Any:
        for _, recipients, data in list(mail_relay.received):
            if address in recipients:
                return message_from_bytes(data, policy=policy.default)
        return None

    message = await eventually(mailed, timeout=60)
    text = message.get_body(("plain",)).get_content()
    assert "Yes, we ship to Lisbon in 3 days." in text
    assert "+" in str(message["Reply-To"])  # a reply address carrying the conversation

    # the visitor answers by email: the same customer, in the chat's conversation
    raw, mid = mail(
        address,
        str(message["Reply-To"]),
        subject=str(message["Subject"]),
        In_Reply_To=str(message["Message-ID"]),
    )
    await aiosmtplib.send(
        raw,
        sender=address,
        recipients=[str(message["Reply-To"])],
        hostname="127.0.0.1",
        port=email_adapter.smtp.port,
    )

    async def answered() -> Any:
        return await pool.fetchrow(
            "SELECT event_id, customer_id FROM timeline WHERE provider_message_id = $1", mid
        )

    found = await eventually(answered, timeout=60)
    assert found["customer_id"] == customer_id
    async with pool.acquire() as conn:
        conversations = await load(conn, customer_id)
    [chat] = [c for c in conversations if any(i["channel"] == "webchat" for i in c.items)]
    assert {i["channel"] for i in chat.items} == {"webchat", "email"}
    assert str(found["event_id"]) in {i["event_id"] for i in chat.items}

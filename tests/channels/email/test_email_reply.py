"""An agent's reply to an email: sent by the dispatcher through the relay (a real SMTP server
on loopback) from the inbox the customer wrote to, threaded as mail clients thread, keeping
Cc; the customer's answer to it lands in the same conversation."""

from __future__ import annotations

import re
import uuid
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import asyncpg
import pytest

from channels.email import EmailAdapter
from tests.channels.email.support import CORPUS, mail
from tests.console_support import ConsoleHttp, csrf_of, make_user
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


async def receive(adapter: EmailAdapter, raw: bytes, sender: str, to: str) -> None:
    await aiosmtplib.send(
        raw, sender=sender, recipients=[to], hostname="127.0.0.1", port=adapter.smtp.port
    )


async def row_of(pool: asyncpg.Pool, mid: str) -> Any:
    async def find() -> Any:
        return await pool.fetchrow(
            "SELECT event_id, customer_id, thread_id FROM timeline WHERE provider_message_id = $1",
            mid,
        )

    return await eventually(find, timeout=60)


async def relayed(mail_relay: Any, customer: str) -> tuple[list[str], EmailMessage]:
    """The recipients and the message the relay received for ``customer``, once there."""

    async def arrived() -> Any:
        for _, recipients, data in mail_relay.received:
            if customer in recipients:
                return recipients, message_from_bytes(data, policy=policy.default)
        return None

    found: tuple[list[str], EmailMessage] = await eventually(arrived, timeout=60)
    return found


async def finance_agent_replies(api_url: str, pool: asyncpg.Pool, first: Any, text: str) -> None:
    """A finance agent answers the message ``first`` (a timeline row) from the console."""
    agent = ConsoleHttp(api_url)
    try:
        await agent.sign_in((await make_user(pool, "agent", ["finance"])).username)
        page = await agent.get(
            f"/console/customers/{first['customer_id']}?reply_to={first['event_id']}"
        )
        answer = await agent.post(
            f"/console/customers/{first['customer_id']}/reply",
            {
                "csrf": csrf_of(page.text),
                "channel": "email",
                "text": text,
                "in_reply_to": str(first["event_id"]),
            },
        )
        assert answer.status_code == 303, answer.text[-500:]
    finally:
        await agent.close()


async def test_a_reply_is_threaded_from_the_inbox_written_to_and_answers_land_in_it(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    customer = f"{unique('reply')}@example.org"
    raw, mid = mail(
        f"Jane <{customer}>",
        "billing@acme.example",
        subject="Invoice 77",
        Cc="accounts@example.org",
        References="<earlier@mail.example.org>",
    )
    await receive(adapter, raw, customer, "billing@acme.example")
    first = await row_of(pool, mid)
    await finance_agent_replies(api_url, pool, first, "We corrected invoice 77. <b>Sorry</b>!")

    recipients, message = await relayed(mail_relay, customer)
    assert set(recipients) == {customer, "accounts@example.org"}  # reply-all keeps Cc
    assert message["From"].addresses[0].addr_spec == "billing@acme.example"
    assert message["Subject"] == "Re: Invoice 77"
    assert message["In-Reply-To"] == f"<{mid}>"
    references = str(message["References"]).split()
    assert references[:2] == ["<earlier@mail.example.org>", f"<{mid}>"]
    ours = str(message["Message-ID"]).strip("<>")
    assert adapter.signer.thread_of_message_id(ours) is not None
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<b>Sorry</b>" in text and "&lt;b&gt;Sorry&lt;/b&gt;" in html
    assert message["Auto-Submitted"] is None  # an agent's reply is a person's mail

    async def delivered() -> Any:
        return await pool.fetchval(
            "SELECT state FROM outbound_messages WHERE customer_id = $1 AND state = 'sent'",
            first["customer_id"],
        )

    assert await eventually(delivered, timeout=30) == "sent"

    # the customer answers our message from a client that keeps only In-Reply-To
    again, again_mid = mail(
        customer, str(message["Reply-To"]), subject="Re: Invoice 77", In_Reply_To=f"<{ours}>"
    )
    await receive(adapter, again, customer, "billing@acme.example")
    assert (await row_of(pool, again_mid))["thread_id"] == first["thread_id"]


async def test_a_reply_goes_where_the_customers_reply_to_asks(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    customer = f"{unique('form')}@example.org"
    asked = f"{unique('asked')}@example.net"
    raw, mid = mail(customer, "billing@acme.example", subject="Invoice 78", Reply_To=asked)
    await receive(adapter, raw, customer, "billing@acme.example")
    first = await row_of(pool, mid)
    await finance_agent_replies(api_url, pool, first, "Invoice 78 is paid.")

    recipients, message = await relayed(mail_relay, asked)
    assert recipients == [asked]
    assert message["To"].addresses[0].addr_spec == asked
    assert message["Subject"] == "Re: Invoice 78"


async def test_a_hard_bounce_fails_the_reply_and_marks_the_address(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    customer = f"{unique('bounce')}@example.org"
    raw, mid = mail(customer, "support@acme.example", subject="Hello")
    await receive(adapter, raw, customer, "support@acme.example")
    first = await row_of(pool, mid)
    agent = ConsoleHttp(api_url)
    try:
        user = await make_user(pool, "agent", ["after_sales"])
        await agent.sign_in(user.username)
        page = await agent.get(f"/console/customers/{first['customer_id']}")
        await agent.post(
            f"/console/customers/{first['customer_id']}/reply",
            {"csrf": csrf_of(page.text), "channel": "email", "text": "Hi!"},
        )

        _, ours = await relayed(mail_relay, customer)
        report = (
            (CORPUS / "dsn_bounce.eml")
            .read_bytes()
            .replace(
                b"<179541933799.5335.1.conv-43@acme.example>", str(ours["Message-ID"]).encode()
            )
            .replace(b"nobody@example.org", customer.encode())
        )
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=adapter.smtp.port) as client:
            await client.mail("")
            await client.rcpt("support@acme.example")
            await client.data(report)

        async def failed() -> Any:
            return await pool.fetchrow(
                "SELECT o.state FROM outbound_messages o"
                " JOIN identities i ON i.customer_id = o.customer_id"
                " WHERE o.customer_id = $1 AND i.undeliverable_since IS NOT NULL",
                first["customer_id"],
            )

        await eventually(failed, timeout=60)
        profile = await agent.get(f"/console/customers/{first['customer_id']}")
        assert "undeliverable since" in profile.text and "5.1.1" in profile.text
        states = await pool.fetch(
            "SELECT d.state, d.error_code FROM delivery_states d JOIN outbound_messages o"
            " USING (command_id) WHERE o.customer_id = $1",
            first["customer_id"],
        )
        assert ("failed", "5.1.1") in {(s["state"], s["error_code"]) for s in states}
    finally:
        await agent.close()


async def test_an_agent_attaches_files_to_a_reply(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, mail_relay: Any
) -> None:
    customer = f"{unique('files')}@example.org"
    raw, mid = mail(customer, "support@acme.example", subject="Send me the manual")
    await receive(adapter, raw, customer, "support@acme.example")
    first = await row_of(pool, mid)
    pdf = b"%PDF-1.4 the manual " + uuid.uuid4().bytes
    agent = ConsoleHttp(api_url)
    try:
        await agent.sign_in((await make_user(pool, "agent", ["after_sales"])).username)
        page = await agent.get(f"/console/customers/{first['customer_id']}")
        assert 'enctype="multipart/form-data"' in page.text
        fields = {
            "csrf": csrf_of(page.text),
            "channel": "email",
            "text": "Here it is.",
            "in_reply_to": str(first["event_id"]),
        }
        answer = await agent.request(
            "POST",
            f"/console/customers/{first['customer_id']}/reply",
            data=fields,
            files=[("files", ("manual.pdf", pdf, "application/pdf"))],
        )
        assert answer.status_code == 303, answer.text[-500:]

        _, message = await relayed(mail_relay, customer)
        [attached] = list(message.iter_attachments())
        assert attached.get_filename() == "manual.pdf"
        assert attached.get_content() == pdf

        # the sent message is on the timeline with its file, which the agent can download
        async def shown() -> Any:
            page = await agent.get(f"/console/customers/{first['customer_id']}")
            found = re.search(
                r'href="(/console/messages/[^"]+/files/1)"[^>]*>manual\.pdf', page.text
            )
            return found[1] if found else None

        download = await agent.get(await eventually(shown, timeout=60))
        assert download.status_code == 200 and download.content == pdf
    finally:
        await agent.close()

"""Mail through `omnihub run channel email` (Kafka only, no database) and the processors onto
the customer's timeline, routed like any other interaction; an automatic reply is recorded
and routed nowhere; a reply to a message we sent lands in its conversation."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import pytest

from channels.email.threads import ThreadSigner
from services.stack.ports import free_port, wait_for_port
from tests.channels.email.support import INBOXES, KEY, corpus, mail
from tests.support import announce_period_keys, eventually, start_component, stop_process, unique

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
def smtp_port(stack: Any, tmp_path: Path) -> Any:
    """The email adapter served alone, with no DATABASE_URL; its SMTP port."""
    http, smtp = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        OMNIHUB_DATA_DIR=str(tmp_path),
        OMNIHUB_HTTP_PORT=str(http),
        OMNIHUB_SMTP_PORT=str(smtp),
        OMNIHUB_LOG_LEVEL="WARNING",
        EMAIL_INBOXES=INBOXES,
        EMAIL_SIGNING_KEY=KEY,
    )
    proc = start_component("channel email", env, tmp_path / "channel.log")
    wait_for_port("127.0.0.1", smtp, 30, alive=lambda: proc.poll() is None)
    yield smtp
    stop_process(proc)


async def timeline_row(pool: asyncpg.Pool, mid: str, routed: bool = False) -> Any:
    """The timeline row of the message with that Message-ID, once it is there (and routed)."""

    async def row() -> Any:
        found = await pool.fetchrow(
            "SELECT t.*, r.department FROM timeline t"
            " LEFT JOIN routing_decisions r ON r.event_id = t.event_id"
            " WHERE t.channel = 'email' AND t.provider_message_id = $1",
            mid,
        )
        return found if found and (found["department"] or not routed) else None

    return await eventually(row, timeout=60)


async def test_mail_reaches_the_timeline_routed_by_its_inbox(
    smtp_port: int, stack: Any, pool: asyncpg.Pool
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    sender = f"{unique('e2e')}@example.org"
    raw, mid = mail(sender, "billing@acme.example", subject="Invoice 2026-114 is wrong")
    await eventually(lambda: _send(smtp_port, raw, sender, "billing@acme.example"), timeout=30)
    row = await timeline_row(pool, mid, routed=True)
    assert row["department"] == "finance"  # billing@ leans to finance (EMAIL_INBOXES)
    assert row["subject"] == "Invoice 2026-114 is wrong"
    assert row["direction"] == "inbound"
    customer = await pool.fetchval(
        "SELECT customer_id FROM identities WHERE type = 'email' AND value = $1", sender
    )
    assert customer == row["customer_id"]

    # a reply to a message we sent to this customer lands in that conversation
    signer = ThreadSigner(KEY.encode(), "acme.example")
    thread = "q" * 26
    ours = signer.message_id(uuid.uuid4(), thread)
    reply, reply_mid = mail(
        sender, "support@acme.example", subject="Re: Invoice", In_Reply_To=f"<{ours}>"
    )
    await _send(smtp_port, reply, sender, "support@acme.example")
    assert (await timeline_row(pool, reply_mid))["thread_id"] == thread

    # an out-of-office answer is on the timeline and goes to no department
    ooo, ooo_mid = corpus("auto_reply_out_of_office.eml")
    await _send(smtp_port, ooo, "max@example.net", "support@acme.example")
    automatic = await timeline_row(pool, ooo_mid)
    decided = await pool.fetchval(
        "SELECT count(*) FROM routing_decisions WHERE event_id = $1", automatic["event_id"]
    )
    assert automatic["department"] is None and decided == 0


async def _send(port: int, raw: bytes, sender: str, *recipients: str) -> bool:
    try:
        await aiosmtplib.send(
            raw, sender=sender, recipients=list(recipients), hostname="127.0.0.1", port=port
        )
    except aiosmtplib.SMTPDataError as exc:  # 451 until the process learnt the period keys
        if exc.code == 451:
            return False
        raise
    return True


async def test_a_reply_without_references_joins_its_subject_and_a_forward_starts_anew(
    smtp_port: int, stack: Any, pool: asyncpg.Pool
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    sender = f"{unique('subject')}@example.org"
    first, first_mid = mail(sender, subject="Broken heater in room 4")
    await eventually(lambda: _send(smtp_port, first, sender, "support@acme.example"), timeout=30)
    thread = (await timeline_row(pool, first_mid))["thread_id"]
    # a client that keeps no In-Reply-To nor References: the subject is all there is
    reply, reply_mid = mail(sender, subject="RE: Broken  heater in room 4")
    await _send(smtp_port, reply, sender, "support@acme.example")
    assert (await timeline_row(pool, reply_mid))["thread_id"] == thread
    forward, forward_mid = mail(sender, subject="Fwd: Broken heater in room 4")
    await _send(smtp_port, forward, sender, "support@acme.example")
    assert (await timeline_row(pool, forward_mid))["thread_id"] != thread
    # someone else's reply of the same subject is not this customer's conversation
    other = f"{unique('other')}@example.org"
    theirs, theirs_mid = mail(other, subject="Re: Broken heater in room 4")
    await _send(smtp_port, theirs, other, "support@acme.example")
    assert (await timeline_row(pool, theirs_mid))["thread_id"] != thread

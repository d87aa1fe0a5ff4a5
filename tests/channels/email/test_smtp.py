"""The SMTP server against the real broker and the suite's processors: 250 only once the
message is staged (the processors read it: ``EmailAdapter.unstage``), 451 when the broker does
not acknowledge, 550/552/452 for what it will not take, one event per message however often
and to however many inboxes it comes."""

from __future__ import annotations

import email
import os
import ssl
import uuid
from collections.abc import AsyncIterator
from email import policy
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from channels.base import BlobMissing, FileBlobStore
from channels.email import EmailAdapter
from channels.email.intake import Outcome, staged
from channels.email.normalise import Envelope
from channels.email.threads import ThreadSigner
from schemas import StagedInput
from schemas.cloudevents import ERROR_HEADER, STAGE_HEADER, header_map
from schemas.topics import DEADLETTER, DELIVERY, INTERACTIONS, STAGED
from services.bus.admin import ensure_topics
from services.bus.producer import Producer
from services.stack.broker import EmbeddedBroker
from tests.channels.email.dovecot import self_signed
from tests.channels.email.support import (
    CORPUS,
    KEY,
    corpus,
    decoded,
    mail,
    message_id,
    of_message,
    settings,
)
from tests.support import (
    consume,
    eventually,
    opened_values,
    read_all,
    sealing_publisher,
    unique,
)

# the suite's processors read what the SMTP server stages, with the same email settings
pytestmark = pytest.mark.usefixtures("processors")


async def started(
    adapter: EmailAdapter, producer: Producer, database_url: str, blobs: Path
) -> EmailAdapter:
    publisher = await sealing_publisher(producer, database_url)
    adapter.attach(publisher, blobs=FileBlobStore(blobs))
    await adapter.start()
    return adapter


@pytest.fixture
async def hub(stack: Any, producer: Producer, data_dir: Path) -> AsyncIterator[EmailAdapter]:
    """The email adapter in-process, on the session broker, its SMTP server on a free port,
    sharing the processors' blob store (as `omnihub up` and a deployment do)."""
    adapter = EmailAdapter(
        settings(data_dir, EMAIL_MAX_MESSAGE_BYTES=800_000, EMAIL_MAX_RECIPIENTS=3)
    )
    await started(adapter, producer, stack.database_url, data_dir / "blobs")
    yield adapter
    await adapter.stop()


async def smtp(adapter: EmailAdapter, raw: bytes, sender: str, *recipients: str) -> Any:
    """Send over SMTP; the server's answer to DATA (raises for refusals)."""
    port = adapter.smtp.port
    assert port is not None
    recipients = recipients or ("support@acme.example",)
    return await aiosmtplib.send(
        raw, sender=sender, recipients=list(recipients), hostname="127.0.0.1", port=port
    )


async def published(
    stack: Any, pool: Any, mid: str, topic: str = INTERACTIONS.name
) -> list[dict[str, Any]]:
    """The opened events of the message with that Message-ID, once there are any."""
    records = await consume(stack.bootstrap, topic, lambda rs: bool(of_message(rs, mid)))
    return decoded(await opened_values(pool, of_message(records, mid)))


async def test_a_message_is_answered_250_once_staged_then_published_with_its_files_stored(
    hub: EmailAdapter, stack: Any, pool: Any, data_dir: Path
) -> None:
    raw, mid = corpus("inbound_reply_with_attachment.eml")
    answer = await smtp(hub, raw, "jane.doe@example.org")
    assert answer[1].startswith("OK") or "2.0.0" in answer[1]
    [event] = await published(stack, pool, mid)
    assert event["channel"] == "email"
    assert event["provider_message_id"] == mid
    assert event["identities"][0]["value"] == "jane.doe@example.org"
    assert event["attributes"]["email_via"] == "smtp"
    assert event["attributes"]["inboxes"] == "support@acme.example"
    assert "wrote:" not in (event["text"] or "")  # the new part; the history is kept beside
    assert "wrote:" in event["attributes"]["history"]
    [attachment] = [a for a in event["attachments"] if not a["inline"]]
    stored = await FileBlobStore(data_dir / "blobs").get(attachment["blob"])
    assert len(stored) == attachment["size"] > 0
    parsed = email.message_from_bytes(raw, policy=policy.default)
    files = [p for p in parsed.walk() if p.get_filename()]
    assert stored == files[0].get_content() or stored == files[0].get_payload(decode=True)


async def test_one_event_for_a_message_to_two_inboxes_sent_twice(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    sender = f"{unique('two')}@example.org"
    raw, mid = mail(sender, "support@acme.example", Cc="billing@acme.example, boss@example.org")
    for _ in range(2):
        await smtp(hub, raw, sender, "support@acme.example", "billing@acme.example")
    events = await published(stack, pool, mid)
    assert {e["event_id"] for e in events} and len({e["event_id"] for e in events}) == 1
    attributes = events[0]["attributes"]
    assert attributes["inboxes"] == "support@acme.example, billing@acme.example"
    assert attributes["participants"] == "boss@example.org"  # a participant, not an identity
    assert [i["value"] for i in events[0]["identities"]] == [sender]
    assert attributes["department_hint"] == "finance"


async def test_unknown_recipients_too_many_and_too_large_are_refused(hub: EmailAdapter) -> None:
    raw, _ = mail("x@example.org")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        await smtp(hub, raw, "x@example.org", "nobody@acme.example")
    assert refused.value.recipients[0].code == 550
    assert "5.1.1" in refused.value.recipients[0].message
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=hub.smtp.port) as client:
        await client.mail("x@example.org")
        for _ in range(3):
            assert (await client.rcpt("support@acme.example")).code == 250
        with pytest.raises(aiosmtplib.SMTPRecipientRefused) as limited:
            await client.rcpt("billing@acme.example")
        assert limited.value.code == 452
    big, _ = mail("x@example.org", text="x" * 900_000)
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=hub.smtp.port) as client:
        await client.ehlo()
        assert client.supports_extension("size")
        assert int(client.esmtp_extensions["size"]) == 800_000
        with pytest.raises(aiosmtplib.SMTPResponseException) as large:
            await client.sendmail("x@example.org", ["support@acme.example"], big)
        assert large.value.code == 552


async def test_a_signed_reply_address_is_accepted_and_carries_the_conversation(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    signer = ThreadSigner(KEY.encode(), "acme.example")
    thread = "a" * 26
    address = signer.reply_address("support@acme.example", thread)
    raw, mid = mail("reply@example.org", address, subject="Re: your ticket")
    await smtp(hub, raw, "reply@example.org", address)
    [event] = await published(stack, pool, mid)
    assert event["thread"]["id"] == thread
    forged = address.replace(thread, "b" * 26)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await smtp(hub, raw, "reply@example.org", forged)


async def test_what_cannot_be_a_message_is_answered_and_dead_lettered_with_its_bytes(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    marker = unique("garbage").encode()
    raw = b"\r\n\r\nthis has no header at all " + marker + b"\r\n"
    await smtp(hub, raw, "x@example.org")

    async def dead_letters() -> list[tuple[bytes, str]]:
        records = [
            r
            for r in await read_all(stack.bootstrap, DEADLETTER.name)
            if header_map(r.headers).get(STAGE_HEADER) == "channels/email"
        ]
        values = await opened_values(pool, records)
        return [
            (value, header_map(record.headers).get(ERROR_HEADER, ""))
            for record, value in zip(records, values, strict=True)
            if value is not None and marker in value
        ]

    [(value, reason)] = await eventually(dead_letters)
    assert value == raw  # the raw message, as the client sent it
    assert "no header" in reason


async def test_our_own_message_coming_back_is_dropped(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    ours = hub.signer.message_id(uuid.uuid4(), "c" * 26)
    raw, _ = mail("support@acme.example", mid=ours)
    marker_raw, marker = mail("support@acme.example", subject="after the echo")
    # one envelope sender: staged in order on one partition, so read in order
    await smtp(hub, raw, "bounces@acme.example")
    await smtp(hub, marker_raw, "bounces@acme.example")
    records = await consume(
        stack.bootstrap, INTERACTIONS.name, lambda rs: bool(of_message(rs, marker))
    )
    assert of_message(records, ours) == []
    assert hub.handler.accepted >= 2


async def test_a_bounce_is_the_failed_delivery_of_the_message_we_sent(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    command = uuid.uuid4()
    ours = hub.signer.message_id(command, "d" * 26)
    raw, mid = corpus("dsn_bounce.eml")
    raw = raw.replace(b"<179541933799.5335.1.conv-43@acme.example>", f"<{ours}>".encode())
    async with aiosmtplib.SMTP(hostname="127.0.0.1", port=hub.smtp.port) as client:
        await client.mail("")  # a report's null return path: MAIL FROM:<>
        await client.rcpt("support@acme.example")
        assert (await client.data(raw)).code == 250
    records = await consume(
        stack.bootstrap,
        DELIVERY.name,
        lambda rs: any(str(command).encode() == r.key for r in rs),
    )
    mine = [r for r in records if r.key == str(command).encode()]
    [status] = decoded(await opened_values(pool, mine))
    assert status["state"] == "failed"
    assert status["error_code"] == "5.1.1"
    assert status["provider_message_id"] == ours
    interactions = await read_all(stack.bootstrap, INTERACTIONS.name)
    assert of_message(interactions, mid) == []  # never a new customer


async def test_automatic_mail_and_dmarc_failures_are_marked(
    hub: EmailAdapter, stack: Any, pool: Any
) -> None:
    ooo, ooo_mid = corpus("auto_reply_out_of_office.eml")
    phish, phish_mid = corpus("dmarc_fail.eml")
    await smtp(hub, ooo, "max@example.net")
    await smtp(hub, phish, "security@bank.example")
    [auto] = await published(stack, pool, ooo_mid)
    assert auto["attributes"]["automatic"].startswith("auto-submitted")
    [forged] = await published(stack, pool, phish_mid)
    assert "DMARC" in forged["attributes"]["sender_unverified"]
    assert forged["attributes"]["auth_dmarc"] == "fail"
    identity = forged["identities"][0]
    assert identity["type"] == "external" and identity["scope"] == "email-dmarc-fail"


async def test_451_when_the_broker_does_not_acknowledge(stack: Any, tmp_path: Path) -> None:
    broker = EmbeddedBroker(tmp_path / "broker")
    broker.start()
    try:
        await ensure_topics(broker.bootstrap)
        producer = Producer(broker.bootstrap, timeout=2.0)
        await producer.start()
        adapter = EmailAdapter(settings(tmp_path))
        await started(adapter, producer, stack.database_url, tmp_path / "blobs")
        try:
            raw, _ = mail("first@example.org")
            await smtp(adapter, raw, "first@example.org")
            broker.stop()
            later, _ = mail("later@example.org")
            with pytest.raises(aiosmtplib.SMTPDataError) as refused:
                await smtp(adapter, later, "later@example.org")
            assert refused.value.code == 451
            assert "4.3.0" in refused.value.message
        finally:
            await adapter.stop()
            await producer.stop()
    finally:
        broker.stop()


async def test_every_corpus_message_is_accepted_then_published_or_dead_lettered(
    hub: EmailAdapter,
) -> None:
    # not messages, and failure reports about mail this hub never sent: dead letters
    dead = {"empty.eml", "garbage.eml", "dsn_bounce.eml", "qmail_bounce.eml"}
    outcomes: dict[str, Outcome] = {}
    for path in sorted(CORPUS.glob("*.eml")):
        raw, _ = corpus(path.name)
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=hub.smtp.port) as client:
            await client.mail("")
            await client.rcpt("support@acme.example")
            answer = await client.data(raw)
            assert answer.code == 250, (path.name, answer)
        # what the processors do with it, in process
        before = dict(hub.unstaged)
        await hub.unstage(
            [staged(hub.name, raw, Envelope("smtp", None, ("support@acme.example",)))]
        )
        [outcome] = [k for k in before if hub.unstaged[k] == before[k] + 1]
        outcomes[path.name] = outcome
    assert {n for n, o in outcomes.items() if o is Outcome.DEAD_LETTERED} == dead
    assert all(o is Outcome.PUBLISHED for n, o in outcomes.items() if n not in dead)


async def test_starttls_when_a_certificate_is_configured(
    stack: Any, producer: Producer, tmp_path: Path, pool: Any
) -> None:
    cert, key = self_signed(tmp_path)
    adapter = EmailAdapter(
        settings(tmp_path, EMAIL_SMTP_TLS_CERT=str(cert), EMAIL_SMTP_TLS_KEY=str(key))
    )
    await started(adapter, producer, stack.database_url, tmp_path / "blobs")
    try:
        raw, mid = mail("tls@example.org")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiosmtplib.SMTP(
            hostname="localhost", port=adapter.smtp.port, start_tls=False, tls_context=trust
        ) as client:
            await client.ehlo()
            assert client.supports_extension("starttls")
            await client.starttls()
            await client.sendmail("tls@example.org", ["support@acme.example"], raw)
        assert await published(stack, pool, mid)
    finally:
        await adapter.stop()


async def test_a_message_the_parser_chokes_on_is_dead_lettered_when_read(
    hub: EmailAdapter, stack: Any, pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw, _ = mail("odd@example.org", subject=unique("odd"))

    def choke(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a parser bug")

    monkeypatch.setattr(hub.intake, "prepare", choke)
    before = hub.unstaged[Outcome.DEAD_LETTERED]
    events = await hub.unstage([staged(hub.name, raw, Envelope("smtp", "odd@example.org"))])
    assert events == [] and hub.unstaged[Outcome.DEAD_LETTERED] == before + 1

    async def dead_letter() -> list[str]:
        records = await read_all(stack.bootstrap, DEADLETTER.name)
        values = await opened_values(pool, records)
        return [
            header_map(record.headers).get(ERROR_HEADER, "")
            for record, value in zip(records, values, strict=True)
            if value == raw
        ]

    [reason] = await eventually(dead_letter)
    assert reason == "unexpected RuntimeError: a parser bug"


async def test_a_message_too_large_for_a_record_waits_in_the_blob_store_until_read(
    hub: EmailAdapter, stack: Any, pool: Any, data_dir: Path
) -> None:
    sender = f"{unique('big')}@example.org"
    message = email.message.EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, "support@acme.example", "Scan"
    mid = message_id("big")
    message["Message-ID"] = f"<{mid}>"
    message.set_content("The scan of the contract, as promised.")
    scan = os.urandom(450_000)
    message.add_attachment(scan, maintype="application", subtype="pdf", filename="scan.pdf")
    raw = message.as_bytes()
    assert len(raw) > 512 * 1024  # channels.base.staging.INLINE_BYTES
    await smtp(hub, raw, sender)

    [event] = await published(stack, pool, mid)
    [attachment] = event["attachments"]
    assert await FileBlobStore(data_dir / "blobs").get(attachment["blob"]) == scan
    records = await read_all(stack.bootstrap, STAGED.name)
    inputs = [StagedInput.model_validate_json(v) for v in await opened_values(pool, records) if v]
    [mine] = [i for i in inputs if i.order_key == sender]
    assert mine.payload == b"" and mine.blob is not None, "the record names the stored bytes"

    async def deleted() -> bool:
        try:
            await FileBlobStore(data_dir / "blobs").get(mine.blob or "")
        except BlobMissing:
            return True
        return False

    assert await eventually(deleted), "deleted once its event was published"

"""Outbound email through a real SMTP server on loopback (aiosmtpd in the test's own loop):
every assertion reads what the server RECEIVED, parsed as a mail client would, so threading,
signed reply addresses, alternatives, attachments, DKIM, TLS, AUTH and the retry policy are
checked on the wire, not on the objects the sender built."""

from __future__ import annotations

import asyncio
import base64
import re
import socket
import ssl
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from channels.base import FileBlobStore, SendError, blob_id
from channels.email import outbound
from channels.email.relay_config import RelaySettings, parse_relay_url
from channels.email.send import EmailSender
from channels.email.threads import ThreadSigner, thread_token
from schemas import Attachment, DeliveryState, Identity, OutboundCommand, ThreadRef
from tests.support import self_signed

INBOX = "support@acme.example"
SIGNER = ThreadSigner(key=b"outbound-test-key-" * 2, domain="mail.acme.example")
MESSAGE_ID = re.compile(r"^<([0-9a-f]{32})\.([a-z2-7]{26})\.([a-z2-7]{16})@mail\.acme\.example>$")


@dataclass
class Received:
    """One message the server took: envelope and bytes."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    login: bytes | None
    tls: bool

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class Recorder:
    """aiosmtpd handler: records what arrives, answers from scripts (then 250)."""

    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    data_attempts: int = 0
    rcpt_seen: list[str] = field(default_factory=list)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.rcpt_seen.append(address)
        script = self.rcpt_replies.get(address)
        if script:
            return script.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.data_attempts += 1
        if self.data_replies:
            return self.data_replies.pop(0)
        assert isinstance(envelope.content, bytes) and envelope.mail_from is not None
        self.received.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                data=envelope.content,
                login=getattr(session.auth_data, "login", None) if session.authenticated else None,
                tls=session.ssl is not None,
            )
        )
        return "250 2.0.0 queued"

    def one(self) -> Received:
        """The single message received (a method: aiosmtpd inspects its handler's members)."""
        [received] = self.received
        return received


Relay = Callable[..., Awaitable[tuple[int, Recorder]]]


@pytest.fixture
async def relay() -> AsyncIterator[Relay]:
    """Starts SMTP servers on loopback ports with the options given (closed afterwards)."""
    servers: list[asyncio.Server] = []

    async def start(**options: Any) -> tuple[int, Recorder]:
        recorder = Recorder()
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(recorder, hostname="relay.test", **options), "127.0.0.1", 0
        )
        servers.append(server)
        return server.sockets[0].getsockname()[1], recorder

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


@pytest.fixture
def blobs(tmp_path: Path) -> FileBlobStore:
    return FileBlobStore(tmp_path / "blobs")


def settings(port: int, **extra: Any) -> RelaySettings:
    values: dict[str, Any] = {
        "OMNIHUB_SMTP_RELAY_URL": f"smtp://127.0.0.1:{port}?starttls=0",
        "EMAIL_SEND_BACKOFF": 0.01,
        "EMAIL_RELAY_TIMEOUT": 10,
        **extra,
    }
    return RelaySettings(**values)


def sender_for(port: int, blobs: FileBlobStore, **extra: Any) -> EmailSender:
    return EmailSender(settings(port, **extra), SIGNER, blobs.get)


def command(
    text: str = "Hello Jane,\n\nyour invoice is corrected.\nRegards",
    to: str = "jane@example.org",
    **fields: Any,
) -> OutboundCommand:
    return OutboundCommand(
        customer_id=uuid.uuid4(),
        channel="email",
        to=Identity(type="email", value=to),
        text=text,
        **fields,
    )


# --- threading, addresses, content ---------------------------------------------------------


async def test_a_reply_threads_by_in_reply_to_references_and_a_signed_reply_address(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    email = sender_for(port, blobs)
    thread = thread_token("an inbound conversation")
    reply = command(
        subject="Re: Invoice 42",
        thread=ThreadRef(id=thread, reply_to="<CAF=orig-2@mail.client.example>"),
        attributes={
            "references": "root-1@mail.client.example <CAF=orig-2@mail.client.example>",
            "cc": "Bob <bob@example.org>, JANE@example.org, support@acme.example",
        },
    )
    result = await email.send(reply, INBOX, "Acme Support")

    got = server.one()
    mail = got.message
    assert got.mail_from == INBOX
    assert got.rcpt_tos == ["jane@example.org", "bob@example.org"]  # no duplicate, not us
    assert mail["From"] == "Acme Support <support@acme.example>"
    assert mail["To"] == "jane@example.org"
    assert mail["Cc"] == "bob@example.org"
    assert mail["Subject"] == "Re: Invoice 42"
    match = MESSAGE_ID.match(mail["Message-ID"])
    assert match is not None, mail["Message-ID"]
    assert match[1] == reply.command_id.hex and match[2] == thread
    bare = mail["Message-ID"][1:-1]
    assert SIGNER.thread_of_message_id(bare) == thread
    assert SIGNER.command_of_message_id(bare) == reply.command_id
    assert result.provider_message_id == bare == outbound.message_id(reply, SIGNER)
    assert result.state is DeliveryState.SENT
    assert mail["In-Reply-To"] == "<CAF=orig-2@mail.client.example>"
    assert mail["References"].split() == [
        "<root-1@mail.client.example>",
        "<CAF=orig-2@mail.client.example>",
    ]
    [reply_to] = mail["Reply-To"].addresses
    assert reply_to.display_name == "Acme Support"
    assert SIGNER.thread_of_address(reply_to.addr_spec) == (INBOX, thread)
    # a forged tag does not verify
    forged = reply_to.addr_spec.replace(thread, thread_token("someone else's"))
    assert SIGNER.thread_of_address(forged) is None
    assert mail["Date"].datetime.tzinfo is not None


async def test_a_resent_command_carries_the_same_message_id_and_starts_its_own_thread(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    email = sender_for(port, blobs)
    first = command(thread=ThreadRef(id="not-a-token"))
    await email.send(first, INBOX)
    await email.send(first, INBOX)
    other = command()
    await email.send(other, INBOX)

    ids = [r.message["Message-ID"] for r in server.received]
    assert ids[0] == ids[1] != ids[2]
    assert SIGNER.thread_of_message_id(ids[0][1:-1]) == thread_token(str(first.command_id))
    assert SIGNER.thread_of_message_id(ids[2][1:-1]) == thread_token(str(other.command_id))
    mail = server.received[0].message
    assert mail["In-Reply-To"] is None and mail["References"] is None
    assert mail["Subject"] == outbound.DEFAULT_SUBJECT


async def test_text_goes_as_plain_and_as_escaped_html(relay: Relay, blobs: FileBlobStore) -> None:
    port, server = await relay()
    text = 'Dear <b>Jane</b> & co,\n\n<script>alert("x")</script>\nsecond line\n\nThanks, Zoë'
    await sender_for(port, blobs).send(command(text), INBOX)

    mail = server.one().message
    assert mail.get_content_type() == "multipart/alternative"
    plain = mail.get_body(("plain",))
    rich = mail.get_body(("html",))
    assert plain is not None and rich is not None
    assert plain.get_content().replace("\r\n", "\n").rstrip("\n") == text
    html = rich.get_content()
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<br>" in html
    assert "<p>Dear &lt;b&gt;Jane&lt;/b&gt; &amp; co,</p>" in html
    assert "<p>Thanks, Zoë</p>" in html
    assert html.count("<p>") == 3
    assert server.one().data.isascii()  # 7-bit on the wire: survives any relay, keeps DKIM


async def test_attachments_arrive_with_their_bytes_names_and_types(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    event = uuid.uuid4()
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    note = "Zeilen\r\nmit Umlaut: äöü\n".encode()
    await blobs.put(blob_id(event, 0), pdf)
    await blobs.put(blob_id(event, 1), note)
    files = [
        Attachment(name="facture é 42.pdf", content_type="application/pdf", blob=blob_id(event, 0)),
        Attachment(name="../notes.txt", content_type="text/plain", blob=blob_id(event, 1)),
    ]
    await sender_for(port, blobs).send(command(attachments=files), INBOX)

    mail = server.one().message
    assert mail.get_content_type() == "multipart/mixed"
    parts = list(mail.iter_attachments())
    assert [p.get_filename() for p in parts] == ["facture é 42.pdf", ".._notes.txt"]
    assert [p.get_content_type() for p in parts] == ["application/pdf", "text/plain"]
    assert [p.get_payload(decode=True) for p in parts] == [pdf, note]
    assert mail.get_body(("plain",)) is not None


async def test_a_missing_blob_fails_before_anything_is_sent(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    missing = Attachment(name="gone.pdf", blob=blob_id(uuid.uuid4(), 0))
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(attachments=[missing]), INBOX)
    assert caught.value.code == "attachment_missing" and not caught.value.retryable
    assert server.rcpt_seen == []


async def test_recipients_come_from_the_command_only_and_headers_cannot_be_injected(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    sneaky = command(
        "To: mallory@evil.example\nCc: mallory@evil.example\n\nhello",
        subject="Hi\r\nBcc: mallory@evil.example",
    )
    await sender_for(port, blobs).send(sneaky, INBOX, "Acme\r\nBcc: mallory@evil.example")

    got = server.one()
    assert got.rcpt_tos == ["jane@example.org"]
    header_block = got.data.split(b"\r\n\r\n", 1)[0]
    assert b"Bcc" not in header_block.replace(b"Bcc: mallory", b"")  # only inside phrases
    assert got.message["Bcc"] is None
    assert got.message["Subject"] == "Hi Bcc: mallory@evil.example"

    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(attributes={"cc": "not an address"}), INBOX)
    assert caught.value.code == "bad_address"


async def test_a_reply_goes_to_the_address_the_customer_asked_replies_to_go_to(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    reply = command(attributes={"reply_to": "jane.home@example.net", "cc": "jane@example.org"})
    await sender_for(port, blobs).send(reply, INBOX)
    got = server.one()
    assert got.rcpt_tos == ["jane.home@example.net"]  # the customer's own address is no Cc
    assert got.message["To"].addresses[0].addr_spec == "jane.home@example.net"
    assert got.message["Cc"] is None

    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(attributes={"reply_to": "no address"}), INBOX)
    assert caught.value.code == "bad_address"


# --- automatic mail ------------------------------------------------------------------------


async def test_automatic_mail_is_marked_and_an_agents_reply_is_not(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    email = sender_for(port, blobs)
    await email.send(command(attributes={"automatic": True}), INBOX)
    await email.send(command(attributes={"automatic": "yes"}), INBOX)  # only True counts
    await email.send(command(), INBOX)

    marked, loose, agent = (r.message for r in server.received)
    assert marked["Auto-Submitted"] == "auto-generated"
    assert marked["X-Auto-Response-Suppress"] == "All"
    for mail in (loose, agent):
        assert mail["Auto-Submitted"] is None and mail["X-Auto-Response-Suppress"] is None


async def test_automatic_mail_is_capped_per_recipient_in_a_sliding_day(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    now = [1000.0]
    email = EmailSender(
        settings(port, EMAIL_AUTOMATIC_CAP=2), SIGNER, blobs.get, clock=lambda: now[0]
    )
    ack = {"automatic": True}
    first = command(attributes=ack)
    await email.send(first, INBOX)
    await email.send(first, INBOX)  # the same command resent counts once
    now[0] += 3600
    await email.send(command(attributes=ack), INBOX)
    with pytest.raises(SendError) as caught:
        await email.send(command(attributes=ack), INBOX)
    assert caught.value.code == "automatic_cap" and not caught.value.retryable
    assert len(server.received) == 3

    await email.send(command(attributes=ack, to="bob@example.org"), INBOX)  # someone else
    await email.send(command(), INBOX)  # an agent is never capped
    now[0] += 86_400 - 3600 + 1  # the first message left the window, the second not yet
    await email.send(command(attributes=ack), INBOX)
    with pytest.raises(SendError):
        await email.send(command(attributes=ack), INBOX)
    assert len(server.received) == 6


async def test_an_automatic_message_the_relay_refused_does_not_count(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.data_replies = ["554 5.7.1 no"]
    email = sender_for(port, blobs, EMAIL_AUTOMATIC_CAP=1)
    with pytest.raises(SendError):
        await email.send(command(attributes={"automatic": True}), INBOX)
    await email.send(command(attributes={"automatic": True}), INBOX)
    assert len(server.received) == 1


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A fresh RSA key: its PEM file and the TXT record publishing it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "sel.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


async def test_dkim_signature_verifies_against_the_published_key(
    relay: Relay, blobs: FileBlobStore, dkim_key: tuple[Path, bytes]
) -> None:
    path, record = dkim_key
    port, server = await relay()
    email = sender_for(
        port,
        blobs,
        EMAIL_DKIM_SELECTOR="sel",
        EMAIL_DKIM_DOMAIN="acme.example",
        EMAIL_DKIM_PRIVATE_KEY_FILE=str(path),
    )
    reply = command(
        "Grüße\n\n<i>not html</i>",
        subject="Re: Ärger",
        thread=ThreadRef(id=thread_token("t"), reply_to="orig@client.example"),
        attributes={"automatic": True},
    )
    await email.send(reply, INBOX, "Zoë at Acme")
    data = server.one().data
    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: float = 5) -> bytes | None:
        looked_up.append(name)
        return record if name == b"sel._domainkey.acme.example." else None

    assert dkim.verify(data, dnsfunc=dns)
    assert looked_up == [b"sel._domainkey.acme.example."]
    signature = server.one().message["DKIM-Signature"]
    signed = re.search(r"h=([^;]+)", signature.replace(" ", ""))
    assert signed is not None
    for name in ("from", "subject", "message-id", "in-reply-to", "reply-to", "auto-submitted"):
        assert name in signed[1].lower().split(":"), name
    # a relay changing the conversation breaks the signature
    tampered = data.replace(b"In-Reply-To: <orig@", b"In-Reply-To: <evil@")
    assert tampered != data and not dkim.verify(tampered, dnsfunc=dns)


async def test_half_configured_dkim_refuses_to_send(relay: Relay, blobs: FileBlobStore) -> None:
    port, server = await relay()
    email = sender_for(port, blobs, EMAIL_DKIM_SELECTOR="sel")
    with pytest.raises(SendError) as caught:
        await email.send(command(), INBOX)
    assert caught.value.code == "config"
    assert "EMAIL_DKIM_DOMAIN" in str(caught.value)
    assert server.rcpt_seen == []


# --- retries and refusals ------------------------------------------------------------------


async def test_a_4xx_is_retried_and_then_sent(relay: Relay, blobs: FileBlobStore) -> None:
    port, server = await relay()
    server.data_replies = ["451 4.3.0 try later"]
    result = await sender_for(port, blobs).send(command(), INBOX)
    assert server.data_attempts == 2
    assert result.provider_message_id == server.one().message["Message-ID"][1:-1]


async def test_a_persistent_4xx_ends_in_a_retryable_error(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.data_replies = ["451 4.3.0 try later"] * 5
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs, EMAIL_SEND_ATTEMPTS=3).send(command(), INBOX)
    assert caught.value.retryable
    assert caught.value.code == "4.3.0"
    assert "try later" in str(caught.value)
    assert server.data_attempts == 3 and server.received == []


async def test_a_5xx_is_permanent_at_once_with_the_servers_code_and_text(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.data_replies = ["554 5.7.1 Message rejected as spam"]
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(), INBOX)
    assert not caught.value.retryable
    assert caught.value.code == "5.7.1"
    assert "Message rejected as spam" in str(caught.value)
    assert server.data_attempts == 1


async def test_a_5xx_without_enhanced_status_carries_the_smtp_code(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.data_replies = ["552 too big"]
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(), INBOX)
    assert caught.value.code == "552" and not caught.value.retryable


async def test_the_customer_refused_is_permanent_and_nothing_is_sent(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.rcpt_replies = {"jane@example.org": ["550 5.1.1 No such user"]}
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs).send(command(), INBOX)
    assert caught.value.code == "5.1.1" and not caught.value.retryable
    assert "No such user" in str(caught.value)
    assert server.data_attempts == 0 and server.rcpt_seen == ["jane@example.org"]


async def test_a_refused_cc_does_not_fail_the_send_and_a_deferred_one_is_retried_alone(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.rcpt_replies = {
        "gone@example.org": ["550 5.1.1 No such user"],
        "busy@example.org": ["450 4.2.1 Mailbox busy"],
    }
    result = await sender_for(port, blobs).send(
        command(attributes={"cc": "gone@example.org, busy@example.org"}), INBOX
    )
    assert [r.rcpt_tos for r in server.received] == [
        ["jane@example.org"],
        ["busy@example.org"],
    ]
    assert server.rcpt_seen == [
        "jane@example.org",
        "gone@example.org",
        "busy@example.org",
        "busy@example.org",
    ]
    ids = {r.message["Message-ID"] for r in server.received}
    assert len(ids) == 1
    assert "gone@example.org" in result.detail and "5.1.1" in result.detail


async def test_a_deferred_customer_is_retried_until_accepted(
    relay: Relay, blobs: FileBlobStore
) -> None:
    port, server = await relay()
    server.rcpt_replies = {"jane@example.org": ["452 4.2.2 Over quota", "450 4.2.1 Busy"]}
    await sender_for(port, blobs).send(command(), INBOX)
    assert server.one().rcpt_tos == ["jane@example.org"]
    assert server.rcpt_seen == ["jane@example.org"] * 3


async def test_an_unreachable_relay_is_retried_then_retryable(blobs: FileBlobStore) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SendError) as caught:
        await sender_for(port, blobs, EMAIL_SEND_ATTEMPTS=2).send(command(), INBOX)
    assert caught.value.retryable and caught.value.code == "network"
    assert "2 attempts" in str(caught.value)


# --- AUTH and TLS --------------------------------------------------------------------------


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"hub", b"s3cret:/@")
    # handled=False: aiosmtpd answers the failure itself (535 5.7.8)
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_auth_with_user_and_password_from_the_url(relay: Relay, blobs: FileBlobStore) -> None:
    port, server = await relay(
        authenticator=authenticator, auth_required=True, auth_require_tls=False
    )
    url = f"smtp://hub:s3cret%3A%2F%40@127.0.0.1:{port}?starttls=0"
    email = sender_for(port, blobs, OMNIHUB_SMTP_RELAY_URL=url)
    await email.send(command(), INBOX)
    assert server.one().login == b"hub"

    wrong = sender_for(port, blobs, OMNIHUB_SMTP_RELAY_URL=url, EMAIL_RELAY_PASSWORD="nope")
    with pytest.raises(SendError) as caught:
        await wrong.send(command(), INBOX)
    assert not caught.value.retryable and caught.value.code == "5.7.8"
    assert len(server.received) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1: (certificate, key) PEM files."""
    return self_signed(tmp_path_factory.mktemp("tls"))


async def test_starttls_verifies_the_relay_and_then_authenticates(
    relay: Relay, blobs: FileBlobStore, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    port, server = await relay(
        tls_context=context, require_starttls=True, authenticator=authenticator, auth_required=True
    )
    url = f"smtp://hub:s3cret%3A%2F%40@127.0.0.1:{port}"  # STARTTLS unless told otherwise
    trusted = sender_for(port, blobs, OMNIHUB_SMTP_RELAY_URL=url, EMAIL_RELAY_CA_FILE=str(cert))
    await trusted.send(command(), INBOX)
    assert server.one().tls and server.one().login == b"hub"

    untrusted = sender_for(port, blobs, OMNIHUB_SMTP_RELAY_URL=url)
    with pytest.raises(SendError) as caught:
        await untrusted.send(command(), INBOX)
    assert caught.value.code == "tls" and not caught.value.retryable
    assert len(server.received) == 1


# --- settings ------------------------------------------------------------------------------


def test_the_relay_url_and_separate_variables_combine() -> None:
    parsed = parse_relay_url("smtp://user%40acme:p%40ss@smtp.acme.example:2587?starttls=1")
    assert (parsed.host, parsed.port, parsed.user, parsed.password, parsed.security) == (
        "smtp.acme.example",
        2587,
        "user@acme",
        "p@ss",
        "starttls",
    )
    tls = RelaySettings(OMNIHUB_SMTP_RELAY_URL="smtps://relay.example").relay()
    assert tls is not None and (tls.port, tls.security) == (465, "tls")
    plain = RelaySettings(OMNIHUB_SMTP_RELAY_URL="smtp://127.0.0.1?starttls=0").relay()
    assert plain is not None and (plain.port, plain.security) == (25, "none")
    parts = RelaySettings(EMAIL_RELAY_HOST="relay.example", EMAIL_RELAY_USER="u")
    assert parts.missing() == ["EMAIL_RELAY_PASSWORD"]
    combined = RelaySettings(
        OMNIHUB_SMTP_RELAY_URL="smtp://u:old@relay.example",
        EMAIL_RELAY_PASSWORD="new",
        EMAIL_RELAY_PORT=2525,
    ).relay()
    assert combined is not None
    assert (combined.host, combined.port, combined.security) == ("relay.example", 2525, "starttls")
    assert (combined.user, combined.password) == ("u", "new")
    assert RelaySettings().missing() == ["OMNIHUB_SMTP_RELAY_URL or EMAIL_RELAY_HOST"]
    assert RelaySettings().send_attempts == 4 and RelaySettings().automatic_cap == 3
    for bad in ("http://relay.example", "smtp://", "smtp://h?starttls=maybe"):
        with pytest.raises(ValidationError):
            RelaySettings(OMNIHUB_SMTP_RELAY_URL=bad)

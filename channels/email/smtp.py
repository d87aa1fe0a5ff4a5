"""The SMTP server mail arrives at (aiosmtpd): it answers 250 only once the message is
published as it came (staged: the processors read it, ``EmailAdapter.unstage``), so a
sending server keeps every message the hub did not take and tries again, and a message is
answered without waiting for its parsing and its files.

- ``550 5.1.1`` for a recipient that is none of our inboxes (nor a signed reply address);
- ``452 4.5.3`` beyond the recipient limit, ``552`` over the size limit (advertised by SIZE);
- ``451 4.3.0`` when the broker (or, for a message over 512 KB, the blob store) did not take
  the message (RFC 5321 4.5.4.1: the sender retries); a message that turns out to be no
  event is dead-lettered when it is read;
- STARTTLS when a certificate is configured; idle connections closed after the RFC's 5 min.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import weakref
from collections.abc import Callable

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.base import BlobStore, Publisher, PublishError, stage
from channels.email.config import EmailSettings
from channels.email.intake import staged
from channels.email.normalise import Envelope as MailEnvelope
from channels.email.threads import ThreadSigner
from schemas.identities import normalise_email

log = logging.getLogger(__name__)

OK = "250 2.0.0 OK: message accepted"
TRY_LATER = "451 4.3.0 Temporary failure storing the message; try again later"


class InboxHandler:
    """aiosmtpd's handler: checks recipients, then stages the message."""

    def __init__(
        self,
        settings: EmailSettings,
        signer: ThreadSigner,
        adapter: str,
        publisher: Callable[[], Publisher],
        blobs: Callable[[], BlobStore],
    ) -> None:
        self.settings = settings
        self.signer = signer
        self.adapter = adapter
        self._publisher = publisher
        self._blobs = blobs
        #: Messages answered 250 (tests read it).
        self.accepted = 0

    def ours(self, address: str) -> str | None:
        """``address`` normalised, if it is one of our inboxes or a signed reply address of
        one; None otherwise."""
        try:
            normalised = normalise_email(address)
        except ValueError:
            return None
        signed = self.signer.thread_of_address(normalised)
        found = self.settings.inbox(signed[0] if signed else normalised)
        return normalised if found is not None else None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        recipient = self.ours(address)
        if recipient is None:
            return f"550 5.1.1 <{address[:256]}>: no such mailbox here"
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(recipient)  # normalised once, here
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        mail = MailEnvelope(
            via="smtp",
            mail_from=envelope.mail_from or None,
            recipients=tuple(envelope.rcpt_tos),
        )
        try:
            await stage(self._publisher(), self._blobs(), staged(self.adapter, raw, mail))
        except (PublishError, OSError) as exc:
            log.warning("email: answered 451 to %s: %s", session.peer, exc)
            return TRY_LATER
        self.accepted += 1
        return OK


class SmtpServer:
    """Listens on the configured address; each connection gets its own aiosmtpd protocol."""

    def __init__(self, settings: EmailSettings, handler: InboxHandler) -> None:
        self.settings = settings
        self.handler = handler
        self._server: asyncio.Server | None = None
        self._hostname = socket.gethostname()  # once: getfqdn per connection may query DNS
        self._tls = _tls_context(settings)
        self._connections: weakref.WeakSet[SMTP] = weakref.WeakSet()

    @property
    def port(self) -> int | None:
        """The port it listens on (the one the system chose when configured as 0)."""
        if self._server is None or not self._server.sockets:
            return None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def _protocol(self) -> SMTP:
        protocol = SMTP(
            self.handler,
            data_size_limit=self.settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self._hostname,
            tls_context=self._tls,
            timeout=self.settings.idle_seconds,
            loop=asyncio.get_running_loop(),
        )
        self._connections.add(protocol)
        return protocol

    async def start(self) -> None:
        """Bind and listen; OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.settings.smtp_host, self.settings.smtp_port
        )
        log.info("email: SMTP server on %s:%s", self.settings.smtp_host, self.port)

    async def stop(self) -> None:
        """Stop listening and close open connections: a message not yet answered 250 is the
        sender's to retry."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.close()
            await server.wait_closed()


def _tls_context(settings: EmailSettings) -> ssl.SSLContext | None:
    if settings.tls_cert_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    return context

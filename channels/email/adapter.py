"""The email adapter: an SMTP server (and IMAP pollers, and the mail services' inbound
webhooks) in; the configured relay out."""

from __future__ import annotations

from typing import ClassVar

from channels.base import Health, SendError, SendResult, SourceAdapter
from channels.email.config import EmailSettings
from channels.email.intake import MailIntake
from channels.email.smtp import InboxHandler, SmtpServer
from channels.email.threads import ThreadSigner
from schemas import Channel, OutboundCommand


class EmailAdapter(SourceAdapter):
    """Email in by SMTP, IMAP and webhooks, out through a relay."""

    name: ClassVar[str] = "email"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.EMAIL})

    def __init__(self, settings: EmailSettings | None = None) -> None:
        self.settings = settings or EmailSettings()
        self.signer = ThreadSigner(self.settings.key(), self.settings.inbox_list[0].domain)
        self.intake = MailIntake(self.settings, self.signer)
        self.handler = InboxHandler(
            self.settings, self.signer, self.intake, lambda: self.publisher, lambda: self.blobs
        )
        self.smtp = SmtpServer(self.settings, self.handler)

    async def start(self) -> None:
        """Start the SMTP server."""
        await self.smtp.start()

    async def stop(self) -> None:
        """Stop the SMTP server (unanswered messages are the senders' to retry)."""
        await self.smtp.stop()

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send through the relay."""
        raise SendError("no outbound relay configured", code="not_configured")

    async def health(self) -> Health:
        """Healthy while the SMTP server listens."""
        port = self.smtp.port
        if port is None:
            return Health(ok=False, detail="SMTP server not listening")
        inboxes = ", ".join(i.address for i in self.settings.inbox_list)
        return Health(ok=True, detail=f"SMTP on port {port} for {inboxes}")

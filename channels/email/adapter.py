"""The email adapter: an SMTP server (and IMAP pollers, and the mail services' inbound
webhooks) in; the configured relay out."""

from __future__ import annotations

import asyncio
from typing import ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    ParseError,
    Route,
    SendResult,
    SourceAdapter,
    WebhookAdapter,
)
from channels.email.config import EmailSettings
from channels.email.intake import MailIntake, Prepared, Unusable
from channels.email.normalise import Envelope
from channels.email.relay_config import RelaySettings
from channels.email.send import EmailSender
from channels.email.smtp import InboxHandler, SmtpServer
from channels.email.threads import ThreadSigner
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhooks import WEBHOOKS
from schemas import Channel, OutboundCommand


class EmailAdapter(SourceAdapter, WebhookAdapter):
    """Email in by SMTP, IMAP and the mail services' webhooks, out through a relay."""

    name: ClassVar[str] = "email"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.EMAIL})
    #: The inbound webhooks of Mailgun, Postmark and SendGrid (limits: EMAIL_WEBHOOK_MAX_BYTES).
    routes: ClassVar[tuple[Route, ...]] = tuple(
        Route(path, summary=hook.summary) for path, hook in WEBHOOKS.items()
    )

    def __init__(
        self,
        settings: EmailSettings | None = None,
        relay: RelaySettings | None = None,
        webhooks: InboundWebhookSettings | None = None,
    ) -> None:
        self.settings = settings or EmailSettings()
        self.relay = relay or RelaySettings()
        self.webhooks = webhooks or InboundWebhookSettings()
        self.max_body_bytes = self.webhooks.max_body_bytes
        self.signer = ThreadSigner(self.settings.key(), self.settings.inbox_list[0].domain)
        self.intake = MailIntake(self.settings, self.signer)
        self.handler = InboxHandler(
            self.settings, self.signer, self.intake, lambda: self.publisher, lambda: self.blobs
        )
        self.smtp = SmtpServer(self.settings, self.handler)
        self.sender = EmailSender(self.relay, self.signer, lambda blob: self.blobs.get(blob))

    async def start(self) -> None:
        """Start the SMTP server."""
        await self.smtp.start()

    async def stop(self) -> None:
        """Stop the SMTP server (unanswered messages are the senders' to retry)."""
        await self.smtp.stop()

    def verify(self, request: InboundRequest, route: Route) -> None:
        """The provider's own check: Mailgun's HMAC, Postmark's basic auth, SendGrid's
        signature or basic auth; a provider not configured is refused."""
        WEBHOOKS[route.path].verify(request, self.webhooks)

    def _prepare(self, request: InboundRequest, route: Route) -> Prepared:
        raw = WEBHOOKS[route.path].raw(request)
        try:
            return self.intake.prepare(raw, Envelope(via=route.path.partition("/")[0]))
        except Unusable as exc:
            raise ParseError(str(exc)) from exc

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """The events of the message the webhook carries (pure)."""
        return self._prepare(request, route).events

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Parse in a worker thread (a webhook may carry 30 MB of mail), store the files,
        hand back the events; nothing for our own message coming back."""
        prepared = await asyncio.to_thread(self._prepare, request, route)
        if prepared.normalised.echo:
            return []
        await self.intake.store(prepared, self.blobs)
        return prepared.events

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send through the relay, from the inbox the customer wrote to (the command's
        ``inbox``, when it is one of ours), else the first inbox."""
        named = command.attributes.get("inbox")
        inbox = self.settings.inbox(named) if isinstance(named, str) else None
        inbox = inbox or self.settings.inbox_list[0]
        return await self.sender.send(command, inbox.address, self.settings.sender_name)

    async def health(self) -> Health:
        """Healthy while the SMTP server listens (in a process that receives) and the relay
        is configured (no network call)."""
        missing = self.relay.missing()
        if missing:
            return Health(ok=False, detail=f"not set: {', '.join(missing)}")
        inboxes = ", ".join(i.address for i in self.settings.inbox_list)
        port = self.smtp.port
        listening = f"SMTP on port {port}" if port is not None else "not receiving here"
        return Health(ok=True, detail=f"{listening} for {inboxes}")

    async def close(self) -> None:
        """Close the relay client."""
        await self.sender.close()

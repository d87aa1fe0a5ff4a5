"""The email adapter: an SMTP server (and IMAP pollers, and the mail services' inbound
webhooks) in; the configured relay out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    ParseError,
    PublishError,
    Route,
    SendResult,
    SignatureError,
    SourceAdapter,
    StagingAdapter,
    UnsupportedMediaType,
    WebhookAdapter,
)
from channels.email.config import EmailSettings
from channels.email.imap import ImapSources
from channels.email.imap_config import ImapSettings
from channels.email.intake import MailIntake, Outcome, Prepared, Unusable
from channels.email.normalise import Envelope
from channels.email.relay_config import RelaySettings
from channels.email.send import EmailSender
from channels.email.smtp import InboxHandler, SmtpServer
from channels.email.threads import ThreadSigner
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhooks import WEBHOOKS
from schemas import Channel, OutboundCommand, StagedInput


class EmailAdapter(SourceAdapter, WebhookAdapter, StagingAdapter):
    """Email in by SMTP (staged, read in the processors), IMAP and the mail services'
    webhooks; out through a relay."""

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
        imap: ImapSettings | None = None,
    ) -> None:
        self.settings = settings or EmailSettings()
        self.imap = imap or ImapSettings()
        self.mailboxes: ImapSources | None = None
        self.relay = relay or RelaySettings()
        self.webhooks = webhooks or InboundWebhookSettings()
        self.max_body_bytes = self.webhooks.max_body_bytes
        self.signer = ThreadSigner(self.settings.key(), self.settings.inbox_list[0].domain)
        self.intake = MailIntake(self.settings, self.signer)
        self.handler = InboxHandler(
            self.settings, self.signer, self.name, lambda: self.publisher, lambda: self.blobs
        )
        #: Staged messages read, by outcome (logs and tests read these).
        self.unstaged: dict[Outcome, int] = dict.fromkeys(Outcome, 0)
        self.smtp = SmtpServer(self.settings, self.handler)
        self.sender = EmailSender(self.relay, self.signer, lambda blob: self.blobs.get(blob))

    async def start(self) -> None:
        """Start the SMTP server, and the IMAP pollers where the process has a database to
        keep their place in."""
        await self.smtp.start()
        if self.imap.accounts and self.state is not None:
            self.mailboxes = ImapSources(self.imap, self.state, self._from_mailbox, self._poison)
            await self.mailboxes.start()

    async def stop(self) -> None:
        """Stop the pollers and the SMTP server (unanswered messages are the senders' to
        retry; a message a poller had not published is fetched again)."""
        mailboxes, self.mailboxes = self.mailboxes, None
        if mailboxes is not None:
            await mailboxes.stop()
        await self.smtp.stop()

    def failure(self) -> BaseException | None:
        """What stopped a poller by itself (the framework restarts the source)."""
        return self.mailboxes.failure() if self.mailboxes is not None else None

    async def _from_mailbox(self, raw: bytes, origin: str) -> None:
        """A polled message: published (or dead-lettered) before the poller moves past it;
        PublishError, the store's failures included, makes it try again later."""
        account = origin.removeprefix("imap:").partition("/")[0]
        try:
            await self.intake.take(raw, Envelope(via=f"imap:{account}"), self.publisher, self.blobs)
        except OSError as exc:
            raise PublishError(f"the blob store did not take the files: {exc}") from exc

    async def _poison(self, data: bytes, origin: str, reason: str) -> None:
        await self.intake.dead_letter(data, Envelope(via=origin), reason, self.publisher)

    async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
        """The events of the messages the SMTP server staged: parsed in a worker thread, files
        stored, what can be no event dead-lettered, our own coming back dropped."""
        outcomes, events = await self.intake.read_staged(inputs, self.publisher, self.blobs)
        for outcome in outcomes:
            self.unstaged[outcome] += 1
        return events

    def verify(self, request: InboundRequest, route: Route) -> None:
        """The provider's own check: Mailgun's HMAC, Postmark's basic auth, SendGrid's
        signature or basic auth; a provider not configured is refused."""
        try:
            WEBHOOKS[route.path].verify(request, self.webhooks)
        except UnsupportedMediaType as exc:
            if route.path.startswith("mailgun"):  # Mailgun signs inside the form: none here
                raise SignatureError(f"no signature can be read: {exc}") from exc
            raise

    def _prepare(self, request: InboundRequest, route: Route) -> Prepared:
        raw = WEBHOOKS[route.path].raw(request)
        try:
            return self.intake.prepare(raw, Envelope(via=route.path.partition("/")[0]))
        except Unusable as exc:
            raise ParseError(str(exc)) from exc
        except Exception as exc:  # a message no test foresaw: dead-lettered, never a 500
            raise ParseError(f"unexpected {type(exc).__name__}: {exc}") from exc

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """The events of the message the webhook carries (pure)."""
        return self._prepare(request, route).events

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Parse in a worker thread (a webhook may carry 30 MB of mail), store the files,
        hand back the events; nothing for our own message coming back."""
        prepared = await asyncio.to_thread(self._prepare, request, route)
        return await self.intake.settle(prepared, self.blobs, route.path)

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
        if self.imap.accounts and self.state is None:
            return Health(ok=False, detail="IMAP accounts need DATABASE_URL to keep their place")
        problems = self.mailboxes.problems() if self.mailboxes is not None else {}
        if problems:
            return Health(ok=False, detail="; ".join(f"{k}: {v}" for k, v in problems.items()))
        inboxes = ", ".join(i.address for i in self.settings.inbox_list)
        port = self.smtp.port
        listening = f"SMTP on port {port}" if port is not None else "not receiving here"
        return Health(ok=True, detail=f"{listening} for {inboxes}")

    async def close(self) -> None:
        """Close the relay client."""
        await self.sender.close()

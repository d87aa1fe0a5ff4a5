"""The Twilio adapter: SMS and MMS, calls and voicemail in; SMS out."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from channels.base import (
    ChannelAdapter,
    Health,
    InboundRequest,
    ParseError,
    SendResult,
    WebhookReply,
)
from channels.twilio import twiml
from channels.twilio.config import TwilioSettings
from channels.twilio.models import Webhook
from channels.twilio.parse import HELP_REPLY, parse_request, webhook_of
from channels.twilio.send import TwilioSender
from channels.twilio.verify import check_signature
from schemas import Channel, Interaction, OutboundCommand
from schemas.events import utcnow

if TYPE_CHECKING:
    from fastapi import APIRouter

    from channels.base import Publisher


class TwilioAdapter(ChannelAdapter):
    """Twilio Programmable Messaging and Voice, verified with the account's auth token."""

    name: ClassVar[str] = "twilio"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.SMS, Channel.VOICE})
    webhooks: ClassVar[tuple[str, ...]] = tuple(hook.value for hook in Webhook)

    def __init__(self, settings: TwilioSettings | None = None) -> None:
        self.settings = settings or TwilioSettings()
        self._sender = TwilioSender(self.settings)

    def verify(self, request: InboundRequest) -> None:
        """Check X-Twilio-Signature against the public URL Twilio called."""
        check_signature(
            request,
            self.settings.token(),
            self.settings.public_url,
            self.settings.max_body_bytes,
        )

    def parse(self, request: InboundRequest) -> list[Interaction]:
        """Parse the webhook's form into interactions (pure)."""
        return parse_request(
            request, utcnow(), source=f"channels/{self.name}", help_text=self.settings.help_text
        )

    def acknowledge(self, request: InboundRequest, interactions: list[Interaction]) -> WebhookReply:
        """TwiML: the help text for HELP, the voicemail for a call, goodbye after recording."""
        settings = self.settings
        try:
            webhook = webhook_of(request.url)
        except ParseError:
            return WebhookReply(200, b"")
        if webhook is Webhook.SMS:
            help_reply = next(
                (i for i in interactions if i.attributes.get("auto_reply") == HELP_REPLY), None
            )
            body = twiml.message(help_reply.text or "") if help_reply else twiml.empty()
            return WebhookReply(200, body, twiml.CONTENT_TYPE)
        if webhook is Webhook.VOICE:
            body = twiml.voicemail(
                settings.voice_greeting,
                settings.voice_language,
                self._callback(Webhook.RECORDING),
                self._callback(Webhook.TRANSCRIPTION),
                settings.voicemail_max_seconds,
            )
            return WebhookReply(200, body, twiml.CONTENT_TYPE)
        if webhook is Webhook.RECORDING:
            return WebhookReply(200, twiml.goodbye(settings.voice_language), twiml.CONTENT_TYPE)
        return WebhookReply(200, b"")

    def _callback(self, webhook: Webhook) -> str:
        """Absolute URL of a webhook; relative to the voice webhook without a public URL."""
        return self.settings.webhook_url("/" + webhook.value) or webhook.value

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send an SMS through Twilio's REST API."""
        return await self._sender.send(command)

    async def health(self) -> Health:
        """Healthy when credentials, sender and public URL are configured (no network call)."""
        missing = self.settings.missing()
        if missing:
            return Health(ok=False, detail=f"not set: {', '.join(missing)}")
        sender = self.settings.messaging_service_sid or self.settings.from_number
        return Health(ok=True, detail=f"account {self.settings.account_sid}, sends as {sender}")

    def router(self, publisher: Publisher) -> APIRouter:
        """The webhooks under /channels/twilio/."""
        from channels.twilio.routes import build_router

        return build_router(self, publisher)

    async def close(self) -> None:
        """Close the REST client's HTTP session."""
        await self._sender.close()

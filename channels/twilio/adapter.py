"""The Twilio adapter: SMS and MMS, calls and voicemail in; SMS out."""

from __future__ import annotations

from typing import ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    Route,
    SendResult,
    WebhookAdapter,
    WebhookReply,
)
from channels.twilio import twiml
from channels.twilio.config import TwilioSettings
from channels.twilio.models import Webhook
from channels.twilio.parse import HELP_REPLY, parse_request
from channels.twilio.send import TwilioSender
from channels.twilio.verify import check_signature
from schemas import Channel, Interaction, OutboundCommand
from schemas.events import utcnow

SUMMARIES = {
    Webhook.SMS: "Incoming SMS and MMS (the phone number's or Messaging Service's webhook)",
    Webhook.MESSAGE_STATUS: "Status callbacks of the SMS the hub sent",
    Webhook.VOICE: "Incoming calls: answered with a greeting and a voicemail recording",
    Webhook.CALL_STATUS: "Call status callbacks",
    Webhook.RECORDING: "The voicemail recording (the <Record> action)",
    Webhook.TRANSCRIPTION: "The voicemail's transcription",
}
#: The webhooks answered with TwiML (``acknowledge``); the others get an empty text/plain 200.
TWIML_ANSWERED = frozenset({Webhook.SMS, Webhook.VOICE, Webhook.RECORDING})


class TwilioAdapter(WebhookAdapter):
    """Twilio Programmable Messaging and Voice, verified with the account's auth token."""

    name: ClassVar[str] = "twilio"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.SMS, Channel.VOICE})
    routes: ClassVar[tuple[Route, ...]] = tuple(
        Route(
            hook.value,
            summary=summary,
            media_type=twiml.CONTENT_TYPE if hook in TWIML_ANSWERED else None,
        )
        for hook, summary in SUMMARIES.items()
    )

    def __init__(self, settings: TwilioSettings | None = None) -> None:
        self.settings = settings or TwilioSettings()
        self.max_body_bytes = self.settings.max_body_bytes
        self._sender = TwilioSender(self.settings)

    def verify(self, request: InboundRequest, route: Route) -> None:
        """Check X-Twilio-Signature against the public URL Twilio called."""
        check_signature(
            request,
            self.settings.token(),
            self.settings.public_url,
            self.settings.max_body_bytes,
        )

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Parse the webhook's form into interactions or delivery states (pure)."""
        return parse_request(
            request,
            Webhook(route.path),
            utcnow(),
            source=f"channels/{self.name}",
            help_text=self.settings.help_text,
        )

    def acknowledge(
        self, request: InboundRequest, route: Route, events: list[ChannelEvent]
    ) -> WebhookReply:
        """TwiML: the help text for HELP, the voicemail for a call, goodbye after recording."""
        settings = self.settings
        webhook = Webhook(route.path)
        if webhook is Webhook.SMS:
            help_reply = next(
                (
                    e
                    for e in events
                    if isinstance(e, Interaction) and e.attributes.get("auto_reply") == HELP_REPLY
                ),
                None,
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

    async def close(self) -> None:
        """Close the REST client's HTTP session."""
        await self._sender.close()

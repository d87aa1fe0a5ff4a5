"""The adapter's webhooks, mounted under /channels/twilio/ (see ``models.Webhook``)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from channels.base import ChannelAdapter, Publisher, receive
from channels.base.http import http_response, inbound_request
from channels.twilio.models import Webhook

SUMMARIES = {
    Webhook.SMS: "Incoming SMS and MMS (the phone number's or Messaging Service's webhook)",
    Webhook.MESSAGE_STATUS: "Status callbacks of the SMS the hub sent",
    Webhook.VOICE: "Incoming calls: answered with a greeting and a voicemail recording",
    Webhook.CALL_STATUS: "Call status callbacks",
    Webhook.RECORDING: "The voicemail recording (the <Record> action)",
    Webhook.TRANSCRIPTION: "The voicemail's transcription",
}


def build_router(adapter: ChannelAdapter, publisher: Publisher) -> APIRouter:
    """One POST route per webhook; each verifies, publishes, then answers (``receive``)."""
    router = APIRouter(tags=["channel: twilio"])

    async def webhook(request: Request) -> Response:
        reply = await receive(adapter, publisher, await inbound_request(request))
        return http_response(reply)

    for hook, summary in SUMMARIES.items():
        router.add_api_route(
            f"/{hook.value}",
            webhook,
            methods=["POST"],
            summary=summary,
            name=f"twilio:{hook.value}",
            response_class=Response,
        )
    return router

"""The Twilio adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

from urllib.parse import urlencode

from channels.base import InboundRequest, Route, WebhookAdapter
from channels.twilio import TwilioAdapter
from channels.twilio.config import TwilioSettings
from tests.channels.twilio import support as twilio


def adapter() -> WebhookAdapter:
    """The adapter with the token and public URL the samples were signed for."""
    return TwilioAdapter(
        TwilioSettings(TWILIO_AUTH_TOKEN=twilio.TOKEN, OMNIHUB_PUBLIC_URL=twilio.PUBLIC_URL)  # type: ignore[call-arg]
    )


def _route(path: str) -> Route:
    return next(r for r in TwilioAdapter.routes if r.path == path)


def _request(path: str, form: dict[str, str], signature: str | None = None) -> InboundRequest:
    signature = twilio.sign(path, form) if signature is None else signature
    return InboundRequest(
        method="POST",
        url=f"{twilio.PUBLIC_URL}/channels/twilio/{path}",
        headers={"Content-Type": twilio.FORM, "X-Twilio-Signature": signature},
        body=urlencode(form).encode(),
    )


def accepted() -> list[tuple[Route, InboundRequest]]:
    """Every signed sample, on its webhook."""
    samples = {
        "sms": "inbound_sms.form.txt",
        "message-status": "message_status_delivered.form.txt",
        "voice": "voice_incoming_call.form.txt",
        "voice/status": "voice_status_callback_completed.form.txt",
    }
    return [
        (_route(path), _request(path, twilio.sample_form(name))) for path, name in samples.items()
    ]


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Signed, but missing what the webhook needs."""
    form = {"Body": "no sender", "MessageSid": "SM00000000000000000000000000000000"}
    status = {"MessageSid": "SM00000000000000000000000000000001", "MessageStatus": "teleported"}
    return [
        (_route("sms"), _request("sms", form)),
        (_route("message-status"), _request("message-status", dict(status, To="+14155551212"))),
    ]


def forged() -> list[tuple[Route, InboundRequest]]:
    """No signature, a signature of another body, one made with another token."""
    form = twilio.sample_form("inbound_sms.form.txt")
    other = dict(form, Body="tampered")
    return [
        (_route("sms"), _request("sms", form, signature="")),
        (_route("sms"), _request("sms", other, signature=twilio.sign("sms", form))),
        (_route("sms"), _request("sms", form, signature=twilio.sign("sms", form, token="x" * 32))),
    ]

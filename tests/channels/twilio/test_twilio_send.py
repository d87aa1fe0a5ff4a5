"""Outbound SMS with the twilio library against a loopback stand-in for Twilio's REST API.

The stand-in runs in the test's own event loop: a send that blocked the loop could never be
answered, so every passing send here is also a send that did not block.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from channels.base import SendError
from channels.twilio import TwilioAdapter
from channels.twilio.config import TwilioSettings
from schemas import DeliveryState, Identity, OutboundCommand
from tests.channels.twilio import support as tw
from tests.channels.twilio.support import FakeTwilio
from tests.support import unique


@pytest.fixture
async def sender(
    twilio_api: FakeTwilio, twilio_env: dict[str, str]
) -> AsyncIterator[TwilioAdapter]:
    """An adapter configured like the dispatcher's, in this process."""
    hub = TwilioAdapter(TwilioSettings(**twilio_env))  # type: ignore[arg-type]
    yield hub
    await hub.close()


def command(text: str, to: str | None = None, kind: str = "phone") -> OutboundCommand:
    """An SMS command to a fresh number."""
    return OutboundCommand(
        customer_id=uuid.uuid4(),
        channel="sms",
        to=Identity(type=kind, value=to or tw.new_phone()),
        text=text,
    )


async def test_sms_goes_out_with_basic_auth_sender_and_status_callback(
    sender: TwilioAdapter, twilio_api: FakeTwilio
) -> None:
    text = unique("Your technician arrives at 10:00")
    sms = command(text)
    result = await sender.send(sms)
    [request] = twilio_api.with_body(text)
    assert request.status == 201
    assert request.account == tw.ACCOUNT
    assert request.auth == (tw.ACCOUNT, tw.TOKEN)
    assert request.one("To") == sms.to.value
    assert request.one("From") == tw.FROM_NUMBER
    assert request.one("MessagingServiceSid") is None
    assert request.one("StatusCallback") == f"{tw.PUBLIC_URL}/channels/twilio/message-status"
    assert result.provider_message_id == request.answer["sid"]
    assert result.provider_message_id.startswith("SM")
    assert result.state is DeliveryState.QUEUED
    assert result.detail.startswith("1 segment, GSM-7")


async def test_messaging_service_sends_are_accepted(
    twilio_api: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    env = dict(twilio_env, TWILIO_MESSAGING_SERVICE_SID="MG" + "1" * 32)
    del env["TWILIO_FROM_NUMBER"]
    hub = TwilioAdapter(TwilioSettings(**env, TWILIO_FROM_NUMBER=None))  # type: ignore[arg-type]
    try:
        text = unique("via the service")
        result = await hub.send(command(text))
    finally:
        await hub.close()
    [request] = twilio_api.with_body(text)
    assert request.one("MessagingServiceSid") == "MG" + "1" * 32
    assert request.one("From") is None
    assert result.state is DeliveryState.QUEUED  # Twilio says "accepted"


@pytest.mark.parametrize(
    ("body", "encoding", "segments"),
    [
        # with unique()'s 13-character suffix:
        ("Bonjour, votre colis arrive demain. " * 5, "GSM-7", 2),  # 193 septets
        ("Ваш заказ готов к выдаче. Спасибо! " * 3, "UCS-2", 2),  # 118 UTF-16 units
        ("Merci 🙏 " * 30, "UCS-2", 5),  # 283 units (each emoji takes two)
    ],
)
async def test_long_and_unicode_messages_report_their_segments(
    sender: TwilioAdapter, twilio_api: FakeTwilio, body: str, encoding: str, segments: int
) -> None:
    text = unique(body)
    result = await sender.send(command(text))
    assert twilio_api.with_body(text)[0].status == 201
    assert result.detail.startswith(f"{segments} segments, {encoding}")


async def test_an_invalid_number_is_refused_with_twilios_code(
    sender: TwilioAdapter, twilio_api: FakeTwilio
) -> None:
    number = tw.new_phone()
    twilio_api.invalid_numbers.add(number)
    text = unique("never delivered")
    with pytest.raises(SendError) as caught:
        await sender.send(command(text, to=number))
    assert caught.value.code == "21211"
    assert "not a valid phone number" in str(caught.value)
    assert not caught.value.retryable
    assert len(twilio_api.with_body(text)) == 1  # a 400 is not retried


async def test_wrong_credentials_are_refused(
    twilio_api: FakeTwilio, twilio_env: dict[str, str]
) -> None:
    hub = TwilioAdapter(
        TwilioSettings(**dict(twilio_env, TWILIO_AUTH_TOKEN="wrong_token_00000000000000000000"))  # type: ignore[arg-type]
    )
    text = unique("wrong token")
    try:
        with pytest.raises(SendError) as caught:
            await hub.send(command(text))
    finally:
        await hub.close()
    assert caught.value.code == "20003"
    assert twilio_api.with_body(text)[0].status == 401


async def test_rate_limited_sends_are_retried(
    sender: TwilioAdapter, twilio_api: FakeTwilio
) -> None:
    text = unique("busy day")
    twilio_api.rate_limited[text] = 2
    result = await sender.send(command(text))
    assert [r.status for r in twilio_api.with_body(text)] == [429, 429, 201]
    assert result.provider_message_id == twilio_api.with_body(text)[-1].answer["sid"]


async def test_unreachable_twilio_is_a_network_error(twilio_env: dict[str, str]) -> None:
    from services.stack.ports import free_port

    env = dict(twilio_env, TWILIO_API_BASE_URL=f"http://127.0.0.1:{free_port()}")
    hub = TwilioAdapter(TwilioSettings(**env))  # type: ignore[arg-type]
    try:
        with pytest.raises(SendError) as caught:
            await hub.send(command("nobody listens"))
    finally:
        await hub.close()
    assert caught.value.code == "network"


async def test_what_twilio_cannot_send_is_refused_before_calling_it(
    sender: TwilioAdapter, twilio_api: FakeTwilio
) -> None:
    before = len(twilio_api.requests)
    with pytest.raises(SendError) as caught:
        await sender.send(command("hi", to="someone@example.com", kind="email"))
    assert caught.value.code == "no_phone"
    unconfigured = TwilioAdapter(TwilioSettings(TWILIO_ACCOUNT_SID=None))  # type: ignore[call-arg]
    with pytest.raises(SendError) as caught:
        await unconfigured.send(command("hi"))
    assert caught.value.code == "config"
    assert len(twilio_api.requests) == before

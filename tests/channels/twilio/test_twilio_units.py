"""The Twilio adapter's pure parts: signatures, parsing, TwiML, segment counting."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from twilio.request_validator import RequestValidator

from channels.base import (
    UNRESOLVED_COMMAND,
    Health,
    InboundRequest,
    ParseError,
    Route,
    SignatureError,
    WebhookReply,
)
from channels.base.errors import PayloadTooLarge, UnsupportedMediaType
from channels.twilio import TwilioAdapter
from channels.twilio.config import TwilioSettings
from channels.twilio.parse import keyword_of
from channels.twilio.segments import count_segments
from channels.twilio.verify import check_signature
from schemas import Channel, DeliveryState, DeliveryStatus, Direction, Kind
from schemas.cloudevents import header_map
from services.bus.producer import event_record
from tests.channels.twilio import support as tw
from tests.channels.twilio.support import SAMPLES

NOW = datetime(2026, 3, 3, 10, 15, tzinfo=UTC)


class Hub:
    """The adapter, each request handed the route the web layer matched for its path."""

    def __init__(self, adapter: TwilioAdapter) -> None:
        self.adapter = adapter
        self.settings = adapter.settings

    @staticmethod
    def route(inbound: InboundRequest) -> Route:
        path = urlsplit(inbound.url).path.removeprefix("/channels/twilio/")
        return next((r for r in TwilioAdapter.routes if r.path == path), Route(path))

    def verify(self, inbound: InboundRequest) -> None:
        self.adapter.verify(inbound, self.route(inbound))

    def parse(self, inbound: InboundRequest) -> list[Any]:
        return self.adapter.parse(inbound, self.route(inbound))

    def acknowledge(self, inbound: InboundRequest, events: list[Any]) -> WebhookReply:
        return self.adapter.acknowledge(inbound, self.route(inbound), events)

    async def health(self) -> Health:
        return await self.adapter.health()


def adapter(**settings: object) -> Hub:
    """An adapter with the samples' token and public URL."""
    values: dict[str, object] = {
        "TWILIO_AUTH_TOKEN": tw.TOKEN,
        "OMNIHUB_PUBLIC_URL": tw.PUBLIC_URL,
        "TWILIO_HELP_TEXT": tw.HELP_TEXT,
    }
    values.update(settings)
    return Hub(TwilioAdapter(TwilioSettings(**values)))  # type: ignore[arg-type]


def request(path: str, params: dict[str, str], signature: str | None = None) -> InboundRequest:
    """A webhook as the hub receives it behind its proxy (http, internal host)."""
    headers = {"content-type": tw.FORM}
    headers["X-Twilio-Signature"] = tw.sign(path, params) if signature is None else signature
    return InboundRequest(
        "POST", f"http://10.0.0.7:8080/channels/twilio/{path}", headers, urlencode(params).encode()
    )


SIGNED_SAMPLES = [
    name
    for name in json.loads((SAMPLES / "signatures.json").read_text())["files"]
    if name.endswith(".form.txt")
]


# --- signatures --------------------------------------------------------------------------


@pytest.mark.parametrize("name", SIGNED_SAMPLES)
def test_sample_signatures_verify_against_the_public_url(name: str) -> None:
    """Each sample, received on an internal address, verifies against the URL Twilio called."""
    url, signature = tw.sample_signature(name)
    parts = urlsplit(url)
    body = (SAMPLES / name).read_bytes().rstrip(b"\n")
    inbound = InboundRequest(
        "POST",
        f"http://127.0.0.1:8080{parts.path}?{parts.query}".rstrip("?"),
        {"Content-Type": tw.FORM, "X-Twilio-Signature": signature},
        body,
    )
    check_signature(inbound, tw.TOKEN, "https://hub.example.com/", 65_536)
    with pytest.raises(SignatureError):  # the same request, checked against the URL it reached
        check_signature(inbound, tw.TOKEN, None, 65_536)
    with pytest.raises(SignatureError):
        check_signature(inbound, "another_token_000000000000000000", tw.PUBLIC_URL, 65_536)


def test_twilio_documented_test_vector() -> None:
    vector = json.loads((SAMPLES / "signature_test_vector.json").read_text())
    parts = urlsplit(vector["url"])
    inbound = InboundRequest(
        "POST",
        f"http://internal{parts.path}?{parts.query}",
        {"X-Twilio-Signature": vector["expected_X-Twilio-Signature"]},
        urlencode(vector["params"]).encode(),
    )
    check_signature(inbound, vector["auth_token"], f"{parts.scheme}://{parts.netloc}", 65_536)


def test_json_webhook_is_covered_by_body_sha256() -> None:
    url, signature = tw.sample_signature("json_body_webhook.json")
    body = (SAMPLES / "json_body_webhook.json").read_bytes().rstrip(b"\n")
    parts = urlsplit(url)
    inbound = InboundRequest(
        "POST",
        f"http://127.0.0.1{parts.path}?{parts.query}",
        {"Content-Type": "application/json", "X-Twilio-Signature": signature},
        body,
    )
    check_signature(inbound, tw.TOKEN, tw.PUBLIC_URL, 65_536)
    tampered = InboundRequest(inbound.method, inbound.url, inbound.headers, body + b" ")
    with pytest.raises(SignatureError):
        check_signature(tampered, tw.TOKEN, tw.PUBLIC_URL, 65_536)


def test_tampered_missing_and_unconfigured_signatures_are_refused() -> None:
    params = tw.sample_form("inbound_sms.form.txt")
    good = request("sms", params)
    adapter().verify(good)
    tampered = InboundRequest(
        good.method, good.url, good.headers, good.body.replace(b"dropping", b"working")
    )
    with pytest.raises(SignatureError, match="does not match"):
        adapter().verify(tampered)
    with pytest.raises(SignatureError, match="missing"):
        adapter().verify(request("sms", params, signature=""))
    with pytest.raises(SignatureError, match="TWILIO_AUTH_TOKEN"):
        Hub(TwilioAdapter(TwilioSettings(OMNIHUB_PUBLIC_URL=tw.PUBLIC_URL))).verify(good)  # type: ignore[call-arg]
    moved = InboundRequest(good.method, good.url.replace("/sms", "/voice"), good.headers, good.body)
    with pytest.raises(SignatureError):  # a signature is only good for the URL it was made for
        adapter().verify(moved)


def test_repeated_parameters_are_all_signed() -> None:
    url = f"{tw.PUBLIC_URL}/channels/twilio/sms"
    pairs = [("From", "+14155550100"), ("MessageSid", "SM1"), ("Tag", "b"), ("Tag", "a")]
    signature = RequestValidator(tw.TOKEN).compute_signature(
        url, {"From": "+14155550100", "MessageSid": "SM1", "Tag": "a"}
    )
    inbound = InboundRequest(
        "POST",
        "http://internal/channels/twilio/sms",
        {"X-Twilio-Signature": signature, "content-type": tw.FORM},
        urlencode(pairs).encode(),
    )
    with pytest.raises(SignatureError):  # the "b" value was not signed
        adapter().verify(inbound)


def test_oversized_and_foreign_bodies_are_refused_before_parsing() -> None:
    params = {"Body": "x" * 70_000, "From": "+14155550100", "MessageSid": "SM1"}
    with pytest.raises(PayloadTooLarge):
        adapter().verify(request("sms", params))
    xml = InboundRequest(
        "POST",
        "http://internal/channels/twilio/sms",
        {"content-type": "text/xml", "X-Twilio-Signature": "x"},
        b"<a/>",
    )
    with pytest.raises(UnsupportedMediaType):
        adapter().verify(xml)


# --- parsing -----------------------------------------------------------------------------


def parse(path: str, params: dict[str, str], **settings: object) -> list:  # type: ignore[type-arg]
    """Verify and parse like the webhook does."""
    hub = adapter(**settings)
    inbound = request(path, params)
    hub.verify(inbound)
    return hub.parse(inbound)


def test_inbound_sms() -> None:
    [sms] = parse("sms", tw.sample_form("inbound_sms.form.txt"))
    assert (sms.channel, sms.direction, sms.kind) == (Channel.SMS, Direction.INBOUND, Kind.MESSAGE)
    assert [i.key for i in sms.identities] == ["phone::+14155550100"]
    assert sms.text == "Hi my router keeps dropping"
    assert sms.provider_message_id == "SM1f0e8ae6ade43cb3c0ce4525424e404f"
    assert sms.provider_ids["messaging_service_sid"] == "MG9752274e9e519418a7406176694466fa"
    assert sms.attributes["to"] == "+14155551212"
    assert sms.source == "channels/twilio"
    assert sms.consent == [] and sms.attachments == []


def test_inbound_mms_keeps_media_as_attachments() -> None:
    [mms] = parse("sms", tw.sample_form("inbound_mms.form.txt"))
    [media] = mms.attachments
    assert media.content_type == "image/jpeg"
    assert media.url.endswith("/Media/ME0123456789abcdef0123456789abcdef")
    assert media.provider_id == "ME0123456789abcdef0123456789abcdef"
    assert mms.text == "Photo of the error"


def test_mms_without_its_media_url_is_a_parse_error() -> None:
    params = dict(tw.sample_form("inbound_mms.form.txt"), NumMedia="2")
    with pytest.raises(ParseError, match="MediaUrl1"):
        parse("sms", params)


@pytest.mark.parametrize(
    ("body", "opt_out_type", "expected"),
    [
        ("STOP", None, "stop"),
        ("  stopall \n", None, "stop"),
        ("Unsubscribe", None, "stop"),
        ("cancel", None, "stop"),
        ("END", None, "stop"),
        ("quit", None, "stop"),
        ("start", None, "start"),
        ("UNSTOP", None, "start"),
        ("Yes", None, "start"),
        ("help", None, "help"),
        ("please stop calling", None, None),
        ("STOP!", None, None),
        ("arret", "STOP", "stop"),
        ("", None, None),
    ],
)
def test_keywords_match_the_whole_trimmed_message_in_any_case(
    body: str, opt_out_type: str | None, expected: str | None
) -> None:
    assert keyword_of(body, opt_out_type) == expected


def test_stop_and_start_change_sms_consent() -> None:
    [stop] = parse("sms", tw.sample_form("inbound_sms_stop_advanced_optout.form.txt"))
    [change] = stop.consent
    assert (change.channel, change.purpose.value, change.granted) == (Channel.SMS, "service", False)
    params = dict(tw.sample_form("inbound_sms.form.txt"), Body=" Start ")
    [start] = parse("sms", params)
    assert [c.granted for c in start.consent] == [True]


def test_nul_characters_are_stripped_from_what_twilio_sends() -> None:
    """PostgreSQL cannot store U+0000 and Twilio cannot fix its payload: the hub drops it."""
    sample = tw.sample_form("inbound_sms.form.txt")
    params = dict(sample, Body="Hi my\x00 router\x00", To=sample["To"] + "\x00")
    [sms] = parse("sms", params)
    assert sms.text == "Hi my router"
    assert sms.attributes["to"] == sample["To"]
    [stop] = parse("sms", dict(sample, Body="STOP\x00"))
    assert stop.text == "STOP" and [c.granted for c in stop.consent] == [False]


def test_help_is_answered_with_the_help_text_and_recorded() -> None:
    hub = adapter()
    inbound = request("sms", dict(tw.sample_form("inbound_sms.form.txt"), Body="HELP"))
    message, reply = hub.parse(inbound)
    assert message.attributes["keyword"] == "help"
    assert (reply.direction, reply.text) == (Direction.OUTBOUND, tw.HELP_TEXT)
    twiml = ET.fromstring(hub.acknowledge(inbound, [message, reply]).body)
    assert [m.text for m in twiml.iter("Message")] == [tw.HELP_TEXT]
    plain = request("sms", tw.sample_form("inbound_sms.form.txt"))
    assert list(ET.fromstring(hub.acknowledge(plain, hub.parse(plain)).body)) == []


def test_message_status_is_a_delivery_receipt_with_a_clear_error() -> None:
    [delivery] = parse("message-status", tw.sample_form("message_status_undelivered.form.txt"))
    assert isinstance(delivery, DeliveryStatus)  # straight to the delivery topic
    assert delivery.channel is Channel.SMS
    assert delivery.command_id == UNRESOLVED_COMMAND
    assert delivery.state is DeliveryState.UNDELIVERED
    assert delivery.provider_message_id == "SM1342fe1b2c904d1ab04f0fc7a58abca9"
    assert delivery.error_code == "30003"
    assert delivery.error_message is not None
    assert "Unreachable destination handset" in delivery.error_message
    [delivered] = parse("message-status", tw.sample_form("message_status_delivered.form.txt"))
    assert isinstance(delivered, DeliveryStatus)
    assert delivered.state is DeliveryState.DELIVERED
    assert delivered.error_code is None


@pytest.mark.parametrize(
    ("code", "words"),
    [
        ("30005", "Unknown destination"),
        ("30006", "landline"),
        ("30007", "filtered"),
        ("21610", "unsubscribed"),
        ("30008", "Unknown error"),
        ("39999", "Twilio reported an error"),
    ],
)
def test_twilio_error_codes_read_clearly(code: str, words: str) -> None:
    params = dict(tw.sample_form("message_status_undelivered.form.txt"), ErrorCode=code)
    [receipt] = parse("message-status", params)
    assert words in (receipt.error_message or "")
    assert f"Twilio error {code}" in (receipt.error_message or "")


def test_incoming_call_and_its_twiml() -> None:
    hub = adapter()
    inbound = request("voice", tw.sample_form("voice_incoming_call.form.txt"))
    hub.verify(inbound)
    [call] = hub.parse(inbound)
    assert (call.channel, call.kind, call.direction) == (
        Channel.VOICE,
        Kind.CALL,
        Direction.INBOUND,
    )
    assert call.provider_message_id == "CA5e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b:ringing"
    assert call.thread is not None and call.thread.id == "CA5e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b"
    reply = hub.acknowledge(inbound, [call])
    assert reply.content_type.startswith("text/xml")
    root = ET.fromstring(reply.body)
    assert [verb.tag for verb in root] == ["Say", "Record", "Say", "Hangup"]
    record = root.find("Record")
    assert record is not None
    assert record.get("transcribe") == "true"
    assert (
        record.get("transcribeCallback") == f"{tw.PUBLIC_URL}/channels/twilio/voice/transcription"
    )
    assert record.get("action") == f"{tw.PUBLIC_URL}/channels/twilio/voice/recording"
    assert root[0].text == hub.settings.voice_greeting


def test_call_status_completed_carries_its_duration_and_time() -> None:
    [call] = parse("voice/status", tw.sample_form("voice_status_callback_completed.form.txt"))
    assert call.provider_message_id == "CA5e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b:completed"
    assert call.attributes["call_duration"] == 87
    assert call.subject == "Call ended after 1 min 27 s"
    assert call.occurred_at == datetime(2026, 3, 3, 10, 14, 2, tzinfo=UTC)


@pytest.mark.parametrize(
    "status", ["ringing", "in-progress", "completed", "busy", "no-answer", "failed", "canceled"]
)
def test_every_call_status_is_its_own_event(status: str) -> None:
    params = dict(tw.sample_form("voice_status_callback_completed.form.txt"), CallStatus=status)
    [call] = parse("voice/status", params)
    assert call.provider_message_id.endswith(f":{status}")
    assert call.attributes["call_status"] == status


def test_outbound_call_belongs_to_the_callee() -> None:
    params = dict(
        tw.sample_form("voice_status_callback_completed.form.txt"),
        Direction="outbound-api",
        From="+14155551212",
        To="+14155550199",
    )
    [call] = parse("voice/status", params)
    assert call.direction is Direction.OUTBOUND
    assert [i.value for i in call.identities] == ["+14155550199"]


def test_voicemail_recording_and_transcription() -> None:
    call = tw.sample_form("voice_incoming_call.form.txt")
    recording = dict(
        call,
        RecordingSid="RE0123456789abcdef0123456789abcdef",
        RecordingUrl="https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE01",
        RecordingDuration="14",
        CallStatus="completed",
    )
    hub = adapter()
    inbound = request("voice/recording", recording)
    [voicemail] = hub.parse(inbound)
    assert (voicemail.kind, voicemail.provider_message_id) == (
        Kind.VOICEMAIL,
        recording["RecordingSid"],
    )
    [audio] = voicemail.attachments
    assert audio.url == recording["RecordingUrl"]
    assert [v.tag for v in ET.fromstring(hub.acknowledge(inbound, [voicemail]).body)] == [
        "Say",
        "Hangup",
    ]
    transcription = dict(
        call,
        TranscriptionSid="TR0123456789abcdef0123456789abcdef",
        TranscriptionText="Hi, it is Ana, my internet is down again.",
        TranscriptionStatus="completed",
        RecordingSid=recording["RecordingSid"],
    )
    [text] = parse("voice/transcription", transcription)
    assert text.kind is Kind.VOICEMAIL
    assert text.text == "Hi, it is Ana, my internet is down again."
    assert text.provider_message_id == "TR0123456789abcdef0123456789abcdef"
    assert text.thread == voicemail.thread


def test_nothing_recorded_is_nothing_published() -> None:
    assert parse("voice/recording", tw.sample_form("voice_incoming_call.form.txt")) == []


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("sms", {"Body": "hi", "MessageSid": "SM1"}, "From"),
        ("sms", {"Body": "hi", "MessageSid": "SM1", "From": "anonymous"}, "From"),
        ("message-status", {"MessageSid": "SM1", "To": "+14155550100"}, "MessageStatus"),
        ("message-status", {"MessageSid": "SM1", "MessageStatus": "weird", "To": "+1415"}, None),
        ("voice/status", {"CallSid": "CA1", "CallStatus": "completed"}, "From"),
    ],
)
def test_incomplete_webhooks_are_parse_errors(
    path: str, params: dict[str, str], field: str | None
) -> None:
    with pytest.raises(ParseError) as caught:
        parse(path, params)
    if field:
        assert field in str(caught.value)


def test_retries_parse_to_the_same_event() -> None:
    params = tw.sample_form("inbound_sms.form.txt")
    assert parse("sms", params)[0].event_id == parse("sms", params)[0].event_id
    status = tw.sample_form("message_status_delivered.form.txt")
    [first], [again] = parse("message-status", status), parse("message-status", status)
    assert first.model_dump(exclude={"occurred_at"}) == again.model_dump(exclude={"occurred_at"})
    ce_ids = {header_map(event_record(r).headers)["ce_id"] for r in (first, again)}
    assert len(ce_ids) == 1  # a retried callback is the same record


# --- segments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding", "count"),
    [
        ("a" * 160, "GSM-7", 1),
        ("a" * 161, "GSM-7", 2),
        ("a" * 306, "GSM-7", 2),
        ("a" * 307, "GSM-7", 3),
        ("Ça coute 5€ {promo}", "GSM-7", 1),  # Ç is GSM-7; € { } are extension characters
        ("€" * 80, "GSM-7", 1),  # 160 septets
        ("€" * 81, "GSM-7", 2),
        ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # 306 septets, but € is not split: 152|2+151|1
        ("ô" * 70, "UCS-2", 1),  # ô is not GSM-7 (ö and ò are)
        ("ô" * 71, "UCS-2", 2),
        ("ô" * 134, "UCS-2", 2),
        ("ô" * 135, "UCS-2", 3),
        ("😀" * 35, "UCS-2", 1),  # two UTF-16 units each
        ("😀" * 36, "UCS-2", 2),
        ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3),  # 134 units, but the pair is not split
        ("Привет, " * 20, "UCS-2", 3),
    ],
)
def test_segments_are_counted_as_twilio_counts_them(body: str, encoding: str, count: int) -> None:
    segments = count_segments(body)
    assert (segments.encoding, segments.count) == (encoding, count)


async def test_adapter_health_names_what_is_missing() -> None:
    bare = TwilioAdapter(
        TwilioSettings(  # type: ignore[call-arg]
            TWILIO_ACCOUNT_SID=None, TWILIO_AUTH_TOKEN=None, OMNIHUB_PUBLIC_URL=None
        )
    )
    health = await bare.health()
    assert not health.ok
    assert "TWILIO_AUTH_TOKEN" in health.detail and "OMNIHUB_PUBLIC_URL" in health.detail
    ready = await adapter(TWILIO_ACCOUNT_SID=tw.ACCOUNT, TWILIO_FROM_NUMBER=tw.FROM_NUMBER).health()
    assert ready.ok, ready.detail

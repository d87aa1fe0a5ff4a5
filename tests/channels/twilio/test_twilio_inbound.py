"""Twilio webhooks through the real `omnihub run api` process, the broker and the processors.

Webhooks are signed with the twilio library for the public URL (OMNIHUB_PUBLIC_URL,
https://hub.example.com) and posted to the API's loopback address, as a proxy would forward
them: the signature holds only if the adapter checks it against the public URL.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest

from schemas.cloudevents import STAGE_HEADER, header_map
from schemas.ids import event_id_for
from schemas.topics import DEADLETTER, INTERACTIONS
from services.api.app import create_app
from services.bus.admin import ensure_topics
from services.config import Settings
from services.stack.broker import EmbeddedBroker
from tests.channels.twilio import support as tw
from tests.channels.twilio.support import customer_of, items, sms
from tests.support import announce_period_keys, consume, eventually, opened_values, read_all

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
async def twilio(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What Twilio's webhook requests come from: no API token, only the signature."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


def call(phone: str, sid: str, **extra: str) -> dict[str, str]:
    """The call status sample for another caller and call."""
    form = dict(tw.sample_form("voice_status_callback_completed.form.txt"), **extra)
    return dict(form, From=phone, Caller=phone, CallSid=sid)


async def item(client: httpx.AsyncClient, phone: str, provider_message_id: str) -> dict[str, Any]:
    """The timeline item of ``provider_message_id``, once it is there."""
    customer = await customer_of(client, phone)

    async def find() -> Any:
        return next(
            (
                i
                for i in await items(client, customer["id"])
                if i["provider_message_id"] == provider_message_id
            ),
            None,
        )

    return await eventually(find)


def with_sid(records: list[Any], provider_message_id: str) -> list[Any]:
    """The records among ``records`` of the SMS with that provider id (by its event id: the
    values are sealed)."""
    ce_id = str(event_id_for("sms", provider_message_id))
    return [r for r in records if header_map(r.headers).get("ce_id") == ce_id]


async def published(
    pool: asyncpg.Pool, records: list[Any], provider_message_id: str
) -> list[dict[str, Any]]:
    """The interactions among ``records`` with that provider id, opened."""
    opened = await opened_values(pool, with_sid(records, provider_message_id))
    return [json.loads(value) for value in opened if value is not None]


async def test_signed_sms_is_published_answered_and_on_the_timeline(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    phone = tw.new_phone()
    form = sms(phone)
    response = await tw.post_webhook(twilio, "sms", form)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert list(ET.fromstring(response.content)) == []  # <Response/>: nothing to say

    records = await consume(
        stack.bootstrap, INTERACTIONS.name, lambda rs: bool(with_sid(rs, form["MessageSid"]))
    )
    [event] = await published(pool, records, form["MessageSid"])
    assert (event["channel"], event["direction"], event["kind"]) == ("sms", "inbound", "message")
    assert event["identities"] == [{"type": "phone", "value": phone, "scope": ""}]
    [record] = with_sid(records, form["MessageSid"])
    assert phone.encode() not in record.key + record.value  # sealed, keyed by a bucket
    assert header_map(record.headers)["ce_source"] == "channels/twilio"

    entry = await item(client, phone, form["MessageSid"])
    assert entry["text"] == "Hi my router keeps dropping"
    assert entry["channel"] == "sms"


async def test_bad_signatures_get_403_and_nothing_is_published(
    twilio: httpx.AsyncClient, stack: Any
) -> None:
    phone = tw.new_phone()
    tampered, unsigned, foreign = sms(phone), sms(phone), sms(phone)
    signature = tw.sign("sms", tampered)
    altered = urlencode(dict(tampered, Body="Please refund me 1000 EUR"))
    responses = [
        await tw.post_webhook(twilio, "sms", tampered, signature=signature, body=altered),
        await tw.post_webhook(twilio, "sms", unsigned, signature=""),
        await tw.post_webhook(
            twilio,
            "sms",
            foreign,
            signature=tw.sign("sms", foreign, token="another_token_0000000000000000000"),
        ),
        # signed for another webhook's URL
        await tw.post_webhook(twilio, "voice", foreign, signature=tw.sign("sms", foreign)),
    ]
    assert [r.status_code for r in responses] == [403, 403, 403, 403]

    # The same number's next message lands in the same partition, after anything published.
    marker = sms(phone, body="marker")
    assert (await tw.post_webhook(twilio, "sms", marker)).status_code == 200
    records = await consume(
        stack.bootstrap, INTERACTIONS.name, lambda rs: bool(with_sid(rs, marker["MessageSid"]))
    )
    for refused in (tampered, unsigned, foreign):
        assert with_sid(records, refused["MessageSid"]) == []


async def test_mms_media_are_kept_as_attachments(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone = tw.new_phone()
    sid = tw.new_sid("MM")
    form = dict(tw.sample_form("inbound_mms.form.txt"), From=phone, MessageSid=sid)
    form.update(
        NumMedia="2",
        MediaUrl1=f"https://api.twilio.com/2010-04-01/Accounts/{tw.ACCOUNT}/Messages/{sid}/Media/ME1",
        MediaContentType1="application/pdf",
    )
    assert (await tw.post_webhook(twilio, "sms", form)).status_code == 200
    entry = await item(client, phone, sid)
    assert entry["text"] == "Photo of the error"
    assert [(a["content_type"], a["url"]) for a in entry["attachments"]] == [
        ("image/jpeg", form["MediaUrl0"]),
        ("application/pdf", form["MediaUrl1"]),
    ]


async def test_an_sms_with_a_nul_reaches_the_timeline_without_it(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone = tw.new_phone()
    form = sms(phone, body="Call me\x00 back")
    assert (await tw.post_webhook(twilio, "sms", form)).status_code == 200
    entry = await item(client, phone, form["MessageSid"])
    assert entry["text"] == "Call me back"


async def test_a_retried_message_gives_one_timeline_row(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    phone = tw.new_phone()
    form = sms(phone, body="Are you open on Sunday?")
    for _ in range(3):  # Twilio retries when it did not see our answer in time
        assert (await tw.post_webhook(twilio, "sms", form)).status_code == 200
    marker = sms(phone, body="marker")
    await tw.post_webhook(twilio, "sms", marker)
    await item(client, phone, marker["MessageSid"])
    customer = await customer_of(client, phone)
    texts = [i["text"] for i in await items(client, customer["id"])]
    assert texts.count("Are you open on Sunday?") == 1
    rows = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE provider_message_id = $1", form["MessageSid"]
    )
    assert rows == 1


async def test_an_incoming_call_is_answered_with_a_voicemail(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone, sid = tw.new_phone(), tw.new_sid("CA")
    form = dict(
        tw.sample_form("voice_incoming_call.form.txt"), From=phone, Caller=phone, CallSid=sid
    )
    response = await tw.post_webhook(twilio, "voice", form)
    assert response.status_code == 200
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    say, record = root[0], root.find("Record")
    assert say.tag == "Say" and say.text
    assert record is not None
    assert record.get("transcribe") == "true"
    assert (
        record.get("transcribeCallback") == f"{tw.PUBLIC_URL}/channels/twilio/voice/transcription"
    )
    assert record.get("action") == f"{tw.PUBLIC_URL}/channels/twilio/voice/recording"
    assert int(record.get("maxLength", "0")) > 0

    entry = await item(client, phone, f"{sid}:ringing")
    assert (entry["channel"], entry["kind"], entry["direction"]) == ("voice", "call", "inbound")
    assert entry["thread_id"] == sid


async def test_call_status_completed_carries_its_duration(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    phone, sid = tw.new_phone(), tw.new_sid("CA")
    for status in ("ringing", "in-progress", "completed"):
        form = call(phone, sid, CallStatus=status)
        if status != "completed":
            del form["CallDuration"]
        assert (await tw.post_webhook(twilio, "voice/status", form)).status_code == 200
    entry = await item(client, phone, f"{sid}:completed")
    assert entry["subject"] == "Call ended after 1 min 27 s"
    assert entry["occurred_at"].startswith("2026-03-03T10:14:02")
    stored = await pool.fetchval(
        "SELECT interaction FROM timeline WHERE event_id = $1::uuid", entry["event_id"]
    )
    assert stored["attributes"]["call_duration"] == 87
    customer = await customer_of(client, phone)
    calls = [i for i in await items(client, customer["id"]) if i["thread_id"] == sid]
    assert sorted(i["provider_message_id"] for i in calls) == sorted(
        f"{sid}:{s}" for s in ("ringing", "in-progress", "completed")
    )
    # Busy, unanswered, failed and canceled calls are events of their own.
    for status in ("busy", "no-answer", "failed", "canceled"):
        other = tw.new_sid("CA")
        form = call(phone, other, CallStatus=status)
        del form["CallDuration"]
        assert (await tw.post_webhook(twilio, "voice/status", form)).status_code == 200
        assert (await item(client, phone, f"{other}:{status}"))["kind"] == "call"


async def test_voicemail_recording_and_transcription_reach_the_timeline(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone, sid = tw.new_phone(), tw.new_sid("CA")
    base = dict(
        tw.sample_form("voice_incoming_call.form.txt"), From=phone, Caller=phone, CallSid=sid
    )
    recording_sid = tw.new_sid("RE")
    recording_url = (
        f"https://api.twilio.com/2010-04-01/Accounts/{tw.ACCOUNT}/Recordings/{recording_sid}"
    )
    recording = dict(
        base, RecordingSid=recording_sid, RecordingUrl=recording_url, RecordingDuration="12"
    )
    response = await tw.post_webhook(twilio, "voice/recording", recording)
    assert [verb.tag for verb in ET.fromstring(response.content)] == ["Say", "Hangup"]
    transcription = dict(
        base,
        RecordingSid=recording_sid,
        TranscriptionSid=tw.new_sid("TR"),
        TranscriptionText="Hello, my fibre box shows a red light since this morning.",
        TranscriptionStatus="completed",
    )
    assert (await tw.post_webhook(twilio, "voice/transcription", transcription)).status_code == 200

    voicemail = await item(client, phone, recording_sid)
    assert voicemail["kind"] == "voicemail"
    assert [a["url"] for a in voicemail["attachments"]] == [recording_url]
    text = await item(client, phone, transcription["TranscriptionSid"])
    assert text["kind"] == "voicemail"
    assert text["text"] == "Hello, my fibre box shows a red light since this morning."
    assert text["thread_id"] == voicemail["thread_id"] == sid


async def test_help_is_answered_with_the_configured_text(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone = tw.new_phone()
    form = sms(phone, body=" help ")
    response = await tw.post_webhook(twilio, "sms", form)
    assert response.status_code == 200
    assert [m.text for m in ET.fromstring(response.content).iter("Message")] == [tw.HELP_TEXT]
    question = await item(client, phone, form["MessageSid"])
    assert question["direction"] == "inbound"
    answer = await item(client, phone, f"{form['MessageSid']}:help-reply")
    assert (answer["direction"], answer["text"]) == ("outbound", tw.HELP_TEXT)


async def test_authentic_but_unreadable_webhooks_are_dead_lettered_and_acknowledged(
    twilio: httpx.AsyncClient, stack: Any, pool: asyncpg.Pool
) -> None:
    form = {"MessageSid": tw.new_sid("SM"), "Body": "who am I?", "From": "anonymous"}
    response = await tw.post_webhook(twilio, "sms", form)
    assert response.status_code == 200  # Twilio must not retry what can never succeed
    sid = form["MessageSid"].encode()

    async def ours() -> list[Any]:
        dead = await read_all(stack.bootstrap, DEADLETTER.name)
        opened = await opened_values(pool, dead)
        return [r for r, value in zip(dead, opened, strict=True) if value and sid in value]

    [record] = await eventually(ours)
    assert header_map(record.headers)[STAGE_HEADER] == "channels/twilio"
    assert sid not in record.value  # the request's body is sealed with the period's key


@pytest.fixture
async def webhooks_on_own_broker(
    stack: Any, tmp_path: Path, twilio_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Any:
    """`omnihub run channel twilio`'s app in-process, on a broker this test may stop."""
    for name, value in twilio_env.items():
        monkeypatch.setenv(name, value)
    broker = EmbeddedBroker(tmp_path)
    broker.start()
    await ensure_topics(broker.bootstrap)
    await announce_period_keys(broker.bootstrap, stack.database_url)
    settings = Settings(OMNIHUB_DATA_DIR=tmp_path, OMNIHUB_PUBLISH_TIMEOUT=2.0)
    app = create_app(settings, broker.bootstrap, None, channels=["twilio"], core=False)
    async with app.router.lifespan_context(app):
        yield app, broker
    broker.stop()


async def test_twilio_gets_503_when_the_broker_is_down(webhooks_on_own_broker: Any) -> None:
    app, broker = webhooks_on_own_broker
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal") as http:
        assert (await tw.post_webhook(http, "sms", sms(tw.new_phone()))).status_code == 200
        voice = dict(tw.sample_form("voice_incoming_call.form.txt"), CallSid=tw.new_sid("CA"))
        assert (await tw.post_webhook(http, "voice", voice)).status_code == 200
        broker.stop()
        response = await tw.post_webhook(http, "sms", sms(tw.new_phone()))
        assert response.status_code == 503  # Twilio retries the webhook later
        voice = dict(voice, CallSid=tw.new_sid("CA"))
        assert (await tw.post_webhook(http, "voice", voice)).status_code == 503
        assert (await http.post("/v1/interactions", json={})).status_code == 404  # webhooks only


async def test_the_webhook_fast_path_keeps_the_limits_metrics_and_other_routes(
    twilio: httpx.AsyncClient, stack: Any
) -> None:
    """Webhooks skip FastAPI's routing, not its guarantees: a body over the web process's limit
    is refused with 413 and not published, requests are counted under their route, and
    methods the fast path does not serve still reach FastAPI."""
    phone = tw.new_phone()
    oversized = sms(phone, "x" * 1_100_000)
    refused = await tw.post_webhook(twilio, "sms", oversized)
    assert refused.status_code == 413
    assert "request body larger than" in refused.text

    later = sms(phone)  # same sender, same partition: it would come after the refused one
    assert (await tw.post_webhook(twilio, "sms", later)).status_code == 200
    records = await consume(
        stack.bootstrap, INTERACTIONS.name, lambda rs: bool(with_sid(rs, later["MessageSid"]))
    )
    assert with_sid(records, oversized["MessageSid"]) == []

    metrics = (await twilio.get("/metrics")).text
    counted = [
        float(m.rsplit(" ", 1)[1])
        for m in metrics.splitlines()
        if m.startswith("omnihub_http_requests_total{")
        and 'route="/channels/twilio/sms"' in m
        and 'status="413"' in m
    ]
    assert counted and counted[0] >= 1

    assert (await twilio.get("/channels/twilio/sms")).status_code == 405

"""SMS replies through Twilio: sent with the twilio library to the loopback stand-in, their
status callbacks turned into the delivery state of the reply's timeline entry, and consent
keywords (STOP/START) deciding whether a reply may leave at all."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from schemas import (
    Channel,
    DeliveryState,
    DeliveryStatus,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    Kind,
)
from schemas.cloudevents import header_map
from schemas.events import UNRESOLVED_COMMAND, utcnow
from schemas.topics import DELIVERY, INTERACTIONS
from services.bus.producer import Producer
from services.bus.records import to_record
from tests.channels.twilio import support as tw
from tests.channels.twilio.support import FakeTwilio, customer_of, items, sms
from tests.support import consume, eventually, opened_values, read_all, unique

pytestmark = pytest.mark.usefixtures("processors", "dispatcher", "twilio_api")


@pytest.fixture
async def twilio(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """What Twilio's webhook requests come from: no API token, only the signature."""
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


async def texting_customer(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, body: str = "Is my order shipped?"
) -> tuple[str, str]:
    """A new customer who texted us: (phone, customer id)."""
    phone = tw.new_phone()
    assert (await tw.post_webhook(twilio, "sms", sms(phone, body=body))).status_code == 200
    return phone, (await customer_of(client, phone))["id"]


async def reply(client: httpx.AsyncClient, customer_id: str, text: str) -> str:
    """An agent's SMS reply; returns its command id."""
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "sms", "text": text}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["command_id"])


async def entry(
    client: httpx.AsyncClient, customer_id: str, command_id: str, state: str | None = None
) -> dict[str, Any]:
    """The reply's timeline entry, once its delivery state is ``state`` (any when None)."""

    async def find() -> Any:
        for i in await items(client, customer_id):
            if i.get("command_id") == command_id and state in (None, i["delivery"]["state"]):
                return i
        return None

    return await eventually(find, timeout=30)


async def status_callback(
    twilio: httpx.AsyncClient, phone: str, sid: str, status: str, **extra: str
) -> None:
    """Twilio's status callback for the message ``sid`` we sent to ``phone``."""
    form = dict(
        tw.sample_form("message_status_delivered.form.txt"),
        MessageSid=sid,
        SmsSid=sid,
        MessageStatus=status,
        SmsStatus=status,
        To=phone,
        From=tw.FROM_NUMBER,
        **extra,
    )
    response = await tw.post_webhook(twilio, "message-status", form)
    assert response.status_code == 200, response.text


async def states(pool: asyncpg.Pool, command_id: str) -> set[str]:
    """Every delivery state recorded for the command."""
    rows = await pool.fetch(
        "SELECT state FROM delivery_states WHERE command_id = $1::uuid", command_id
    )
    return {r["state"] for r in rows}


async def sent_sid(twilio_api: FakeTwilio, text: str) -> str:
    """The sid Twilio gave the message whose body is ``text``, once it was sent."""

    async def sid() -> Any:
        sent = [r for r in twilio_api.with_body(text) if r.status == 201]
        return sent[0].answer["sid"] if sent else None

    return str(await eventually(sid, timeout=30))


async def test_reply_is_sent_through_twilio_and_its_statuses_reach_its_entry(
    twilio: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_api: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    phone, customer_id = await texting_customer(twilio, client)
    text = unique("Yes, it left our warehouse this morning")
    command_id = await reply(client, customer_id, text)

    queued = await entry(client, customer_id, command_id, "queued")
    [request] = twilio_api.with_body(text)
    assert request.auth == (tw.ACCOUNT, tw.TOKEN)
    assert (request.one("To"), request.one("From")) == (phone, tw.FROM_NUMBER)
    assert request.one("StatusCallback") == f"{tw.PUBLIC_URL}/channels/twilio/message-status"
    sid = request.answer["sid"]
    recorded = await pool.fetchval(
        "SELECT provider_message_id FROM outbound_messages WHERE command_id = $1::uuid", command_id
    )
    assert recorded == sid  # what unify drops as echoes, and what status callbacks resolve by
    assert (queued["direction"], queued["channel"], queued["text"]) == ("outbound", "sms", text)

    await status_callback(twilio, phone, sid, "sent")
    await entry(client, customer_id, command_id, "sent")
    await status_callback(twilio, phone, sid, "delivered", RawDlrDoneDate="2603031012")
    await status_callback(twilio, phone, sid, "delivered")  # Twilio retried the callback
    delivered = await entry(client, customer_id, command_id, "delivered")
    assert delivered["delivery"]["error_code"] is None

    # The callbacks updated the reply; they are not timeline entries of their own.
    timeline = await items(client, customer_id)
    assert [i["kind"] for i in timeline if i["kind"] == "status"] == []
    assert [i.get("command_id") for i in timeline].count(command_id) == 1
    assert await states(pool, command_id) == {"queued", "sent", "delivered"}


async def test_statuses_out_of_order_never_move_backwards(
    twilio: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_api: FakeTwilio,
    pool: asyncpg.Pool,
) -> None:
    phone, customer_id = await texting_customer(twilio, client)
    text = unique("Your refund was issued")
    command_id = await reply(client, customer_id, text)
    sid = await sent_sid(twilio_api, text)
    await status_callback(twilio, phone, sid, "delivered")
    await entry(client, customer_id, command_id, "delivered")
    await status_callback(twilio, phone, sid, "sent")  # late
    await status_callback(twilio, phone, sid, "sending")  # later still
    await eventually(lambda: _contains(states(pool, command_id), {"sent", "sending"}))
    assert (await entry(client, customer_id, command_id))["delivery"]["state"] == "delivered"


async def _contains(found: Any, wanted: set[str]) -> bool:
    return wanted <= await found


async def test_undelivered_shows_the_twilio_error(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, twilio_api: FakeTwilio
) -> None:
    phone, customer_id = await texting_customer(twilio, client)
    text = unique("Your appointment is confirmed")
    command_id = await reply(client, customer_id, text)
    sid = await sent_sid(twilio_api, text)
    await status_callback(twilio, phone, sid, "sent")
    await status_callback(twilio, phone, sid, "undelivered", ErrorCode="30003")
    failed = await entry(client, customer_id, command_id, "undelivered")
    assert failed["delivery"]["error_code"] == "30003"
    assert "Unreachable destination handset" in failed["delivery"]["error"]


async def test_a_number_twilio_rejects_fails_with_its_code(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, twilio_api: FakeTwilio
) -> None:
    phone, customer_id = await texting_customer(twilio, client)
    twilio_api.invalid_numbers.add(phone)
    text = unique("This will not go out")
    command_id = await reply(client, customer_id, text)
    failed = await entry(client, customer_id, command_id, "failed")
    assert failed["delivery"]["error_code"] == "21211"
    assert "not a valid phone number" in failed["delivery"]["error"]
    assert [r.status for r in twilio_api.with_body(text)] == [400]


async def consent(client: httpx.AsyncClient, phone: str, granted: bool) -> None:
    """Wait until the customer's SMS service consent is ``granted``."""

    async def settled() -> bool:
        customer = await customer_of(client, phone)
        return any(
            (c["channel"], c["purpose"], c["granted"]) == ("sms", "service", granted)
            for c in customer["consents"]
        )

    await eventually(settled)


async def test_stop_refuses_replies_before_twilio_and_start_allows_them_again(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, twilio_api: FakeTwilio
) -> None:
    phone, customer_id = await texting_customer(twilio, client)
    # The Advanced Opt-Out sample: Body STOP, OptOutType STOP.
    stop = dict(
        tw.sample_form("inbound_sms_stop_advanced_optout.form.txt"),
        From=phone,
        MessageSid=tw.new_sid("SM"),
    )
    assert (await tw.post_webhook(twilio, "sms", stop)).status_code == 200
    await consent(client, phone, granted=False)

    refused_text = unique("Our summer offer")
    refused_id = await reply(client, customer_id, refused_text)
    refused = await entry(client, customer_id, refused_id, "refused")
    assert refused["delivery"]["error_code"] == "consent_withdrawn"
    assert "withdrew consent to sms" in refused["delivery"]["error"]
    assert twilio_api.with_body(refused_text) == []  # never reached Twilio

    assert (await tw.post_webhook(twilio, "sms", sms(phone, body="start"))).status_code == 200
    await consent(client, phone, granted=True)
    allowed_text = unique("Welcome back")
    allowed_id = await reply(client, customer_id, allowed_text)
    await entry(client, customer_id, allowed_id, "queued")
    assert [r.status for r in twilio_api.with_body(allowed_text)] == [201]
    assert twilio_api.with_body(refused_text) == []


async def test_plain_stop_keyword_withdraws_sms_consent(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    phone, _ = await texting_customer(twilio, client)
    assert (
        await tw.post_webhook(twilio, "sms", sms(phone, body="Unsubscribe "))
    ).status_code == 200
    await consent(client, phone, granted=False)


async def test_a_receipt_that_outruns_the_send_bookkeeping_is_kept_until_claimed(
    twilio: httpx.AsyncClient, client: httpx.AsyncClient, pool: asyncpg.Pool, stack: Any
) -> None:
    """Twilio calls back before the dispatcher recorded the sid: the state is not lost."""
    phone, customer_id = await texting_customer(twilio, client)
    sid, command_id = tw.new_sid("SM"), uuid.uuid4()
    await status_callback(twilio, phone, sid, "delivered")

    async def parked() -> Any:
        return await pool.fetchval(
            "SELECT state FROM pending_delivery_states WHERE provider_message_id = $1", sid
        )

    assert await eventually(parked) == "delivered"
    # What the dispatcher does after Twilio answered: record the sid, then publish the state.
    await pool.execute(
        "INSERT INTO outbound_messages (command_id, customer_id, channel, state, attempts,"
        " provider_message_id) VALUES ($1, $2::uuid, 'sms', 'queued', 1, $3)",
        command_id,
        customer_id,
        sid,
    )
    producer = Producer(stack.bootstrap)
    await producer.start()
    try:
        status = DeliveryStatus(
            command_id=command_id,
            channel="sms",
            state=DeliveryState.QUEUED,
            occurred_at=utcnow(),
            provider_message_id=sid,
        )
        await producer.send_all([to_record(DELIVERY, status, str(command_id), "tests")])
    finally:
        await producer.stop()
    await eventually(lambda: _contains(states(pool, str(command_id)), {"queued", "delivered"}))
    assert await parked() is None


async def test_a_status_callback_goes_straight_to_the_delivery_topic_not_as_an_interaction(
    twilio: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_api: FakeTwilio,
    pool: asyncpg.Pool,
    stack: Any,
) -> None:
    """The callback is a delivery state keyed by the message (Twilio knows no command): the
    delivery agent attributes it to the command, with no interaction on the way."""
    phone, customer_id = await texting_customer(twilio, client)
    text = unique("Your parcel is at the door")
    command_id = await reply(client, customer_id, text)
    sid = await sent_sid(twilio_api, text)
    await status_callback(twilio, phone, sid, "delivered")  # answered once the broker acked

    key = f"sms:{sid}".encode()
    records = await consume(
        stack.bootstrap, DELIVERY.name, lambda found: any(r.key == key for r in found)
    )
    [record] = [r for r in records if r.key == key]
    status = DeliveryStatus.model_validate_json(record.value)
    assert status.command_id == UNRESOLVED_COMMAND
    assert (status.channel, status.state, status.provider_message_id) == (
        Channel.SMS,
        DeliveryState.DELIVERED,
        sid,
    )
    assert header_map(record.headers)["ce_type"] == DELIVERY.ce_type

    def about_the_callback(value: bytes | None) -> bool:
        try:
            interaction = json.loads(value or b"")
        except ValueError:  # other tests publish garbage on purpose
            return False
        if not isinstance(interaction, dict):
            return False
        return str(interaction.get("provider_message_id")).startswith(sid) or (
            (interaction.get("delivery") or {}).get("provider_message_id") == sid
        )

    interactions = await read_all(stack.bootstrap, INTERACTIONS.name)
    opened = await opened_values(pool, interactions)
    assert len(opened) == len(interactions) and not any(map(about_the_callback, opened))
    await entry(client, customer_id, command_id, "delivered")  # resolved by the delivery agent
    assert await states(pool, command_id) == {"queued", "delivered"}


async def test_a_receipt_published_as_an_interaction_by_an_older_version_still_counts(
    twilio: httpx.AsyncClient,
    client: httpx.AsyncClient,
    twilio_api: FakeTwilio,
    pool: asyncpg.Pool,
    stack: Any,
) -> None:
    """Older versions published a status callback as a ``status`` interaction carrying the
    state: unify forwards its state to the delivery topic, and it is recorded as the others."""
    phone, customer_id = await texting_customer(twilio, client)
    text = unique("Your table is booked")
    command_id = await reply(client, customer_id, text)
    sid = await sent_sid(twilio_api, text)
    legacy = Interaction.create(
        channel=Channel.SMS,
        direction=Direction.OUTBOUND,
        kind=Kind.STATUS,
        identities=[Identity(type=IdentityType.PHONE, value=phone)],
        subject="SMS delivered",
        provider_message_id=f"{sid}:delivered",
        source="channels/twilio",
        delivery=DeliveryStatus(
            command_id=UNRESOLVED_COMMAND,
            channel=Channel.SMS,
            state=DeliveryState.DELIVERED,
            occurred_at=utcnow(),
            provider_message_id=sid,
        ),
    )
    producer = Producer(stack.bootstrap)
    await producer.start()
    try:
        await producer.send_all([to_record(INTERACTIONS, legacy, str(legacy.event_id), "tests")])
    finally:
        await producer.stop()
    await entry(client, customer_id, command_id, "delivered")
    assert await states(pool, command_id) == {"queued", "delivered"}
    timeline = await items(client, customer_id)
    assert [i["kind"] for i in timeline if i["kind"] == "status"] == []

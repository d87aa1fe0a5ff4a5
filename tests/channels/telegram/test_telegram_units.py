"""The Telegram adapter in this process: parsing the samples, the settings, and the Bot API
calls (sending, getFile and downloads) against the loopback stand-in, ``FakeBotApi``."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from channels.base import ChannelEvent, FileBlobStore, InboundRequest, SendError
from channels.telegram import TelegramAdapter
from channels.telegram.api import redact
from channels.telegram.config import TelegramSettings
from channels.telegram.parse import Ignored, parse_update
from channels.telegram.send import split_text
from schemas import (
    Attachment,
    DeliveryStatus,
    Identity,
    IdentityType,
    Interaction,
    OutboundCommand,
    StagedInput,
)
from schemas.events import utcnow
from schemas.ids import event_id_for
from services.stack.ports import free_port
from tests.channels.telegram import support as tg
from tests.channels.telegram.support import FakeBotApi


class RecordingPublisher:
    """Keeps what the adapter publishes and dead-letters."""

    def __init__(self) -> None:
        self.events: list[ChannelEvent] = []
        self.dead: list[tuple[bytes, str, str]] = []

    async def publish(self, events: Sequence[ChannelEvent]) -> None:
        self.events.extend(events)

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        self.dead.append((request.body, reason, stage))

    async def stage(self, staged: StagedInput) -> None:
        raise AssertionError("not here")

    async def relay(self, command: OutboundCommand) -> None:
        raise AssertionError("not here")


def parse(body: dict[str, Any] | bytes, groups: str = "ignore") -> Interaction:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_update(
        content,
        bot=tg.BOT_ID,
        groups=groups,
        received_at=utcnow(),
        source="channels/telegram",  # type: ignore[arg-type]
    ).interaction


# --- parsing --------------------------------------------------------------------------------


def test_the_text_sample_is_the_users_message_scoped_to_the_bot() -> None:
    event = parse(tg.sample_http()[1])
    assert event.identities == [
        Identity(type=IdentityType.TELEGRAM, scope=tg.BOT_ID, value="1111111")
    ]
    assert event.text == "/start"
    assert event.provider_message_id == f"{tg.BOT_ID}:1111111:1365"
    assert event.event_id == event_id_for("telegram", f"{tg.BOT_ID}:1111111:1365")
    assert event.language == "en"
    assert event.attributes["sender_name"] == "Test Lastname"
    assert event.attributes["username"] == "Testusername"
    assert event.thread is not None and event.thread.id == f"{tg.BOT_ID}:1111111"
    assert event.occurred_at.timestamp() == 1441645532


def test_a_photo_keeps_its_largest_size_its_caption_and_what_it_answers() -> None:
    event = parse(tg.sample("update_reply_with_photo.json"))
    [photo] = event.attachments
    assert photo.provider_id == "AgACAgIAAxkBAAIBVmXg"  # 800x600, not the 90x67 thumbnail
    assert (photo.content_type, photo.size, photo.blob) == ("image/jpeg", 41310, None)
    assert event.text == "Hier ist das Foto"
    assert event.language == "de"
    original = f"{tg.BOT_ID}:1111111:1365"
    assert event.thread is not None and event.thread.reply_to == original
    assert event.attributes["in_reply_to"] == str(event_id_for("telegram", original))


def test_an_edit_revises_the_original_and_is_an_event_of_its_own() -> None:
    photo = tg.sample("update_reply_with_photo.json")
    first = parse(tg.edited(photo, "Hier ist das richtige Foto", 1441645700))
    again = parse(tg.edited(photo, "Hier ist das richtige Foto", 1441645700))
    later = parse(tg.edited(photo, "noch einmal", 1441645800))
    assert first.revises is not None
    assert (first.revises.of, first.revises.action) == (f"{tg.BOT_ID}:1111111:1366", "edit")
    assert first.text == "Hier ist das richtige Foto"
    assert first.event_id == again.event_id != later.event_id
    assert first.event_id != event_id_for("telegram", f"{tg.BOT_ID}:1111111:1366")


def test_a_button_press_is_a_message_with_the_buttons_data() -> None:
    event = parse(tg.callback(1111111, "rating:5", on_message=77))
    assert event.text == "rating:5"
    assert event.attributes["callback_data"] == "rating:5"
    assert event.attributes["button_on"] == f"{tg.BOT_ID}:1111111:77"
    assert event.provider_ids["callback_query_id"]


def test_groups_are_ignored_or_recorded_as_configured() -> None:
    body = tg.in_group(2222222, "hello everyone")
    with pytest.raises(Ignored, match="supergroup"):
        parse(body)
    event = parse(body, groups="record")
    assert event.identities[0].value == "2222222"
    assert event.attributes["chat_type"] == "supergroup"
    assert event.attributes["chat_title"] == "Customers"
    assert event.thread is not None and event.thread.id == f"{tg.BOT_ID}:-1001234567890"


def test_what_can_be_no_customers_message_is_ignored_with_a_reason() -> None:
    echo = tg.update(user=1111111)
    echo["message"]["from"] = {"id": int(tg.BOT_ID), "is_bot": True, "first_name": "Omnihub"}
    with pytest.raises(Ignored, match="echo"):
        parse(echo)
    with pytest.raises(Ignored, match="'my_chat_member'"):
        parse({"update_id": 1, "my_chat_member": {}})
    with pytest.raises(Ignored, match="channel post"):
        parse({"update_id": 2, "channel_post": tg.in_group(1, "x")["message"]})


def test_files_location_and_contact_are_attachments() -> None:
    event = parse(
        tg.update(
            text=None,
            voice={"file_id": "AwACAgIAAx", "file_unique_id": "v1", "duration": 3, "file_size": 9},
            location={"latitude": 48.858370, "longitude": 2.294481},
            contact={"phone_number": "+33612345678", "first_name": "Ann", "vcard": "BEGIN:VCARD"},
        )
    )
    voice, place, contact = event.attachments
    assert (voice.content_type, voice.provider_id) == ("audio/ogg", "AwACAgIAAx")
    assert place.url == "geo:48.858370,2.294481"
    assert contact.content_type == "text/vcard" and "+33612345678" in (contact.name or "")
    assert event.text is None


def test_settings_refuse_what_telegram_would() -> None:
    with pytest.raises(ValidationError):
        TelegramSettings(TELEGRAM_WEBHOOK_SECRET="has spaces")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TelegramSettings(TELEGRAM_WEBHOOK_SECRET="x" * 257)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        TelegramSettings(TELEGRAM_BOT_TOKEN="not-a-token")  # type: ignore[call-arg]
    settings = TelegramSettings(TELEGRAM_BOT_TOKEN=tg.TOKEN)  # type: ignore[call-arg]
    assert settings.bot_id == tg.BOT_ID
    assert settings.missing() == ["TELEGRAM_WEBHOOK_SECRET"]


def test_text_is_split_where_telegram_needs_it_and_tokens_are_redacted() -> None:
    parts = split_text("word " * 2000)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts).split() == ("word " * 2000).split()
    assert split_text("short") == ["short"]
    assert tg.TOKEN not in redact(f"https://api.telegram.org/bot{tg.TOKEN}/sendMessage failed")


# --- the Bot API ----------------------------------------------------------------------------


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeBotApi, int]]:
    """A stand-in of the Bot API of its own, on a free port."""
    api = FakeBotApi()
    port = free_port()
    runner = await api.start(port)
    yield api, port
    await runner.cleanup()


@pytest.fixture
async def hub(
    fake: tuple[FakeBotApi, int], tmp_path: Path
) -> AsyncIterator[tuple[TelegramAdapter, RecordingPublisher, FileBlobStore]]:
    """An adapter pointed at the fake, with a recording publisher and a blob store."""
    env = dict(tg.telegram_env(fake[1]), TELEGRAM_MAX_RETRY_AFTER="3")
    adapter = TelegramAdapter(TelegramSettings(**env))  # type: ignore[arg-type]
    publisher, blobs = RecordingPublisher(), FileBlobStore(tmp_path / "blobs")
    adapter.attach(publisher, blobs=blobs)
    yield adapter, publisher, blobs
    await adapter.close()


def reply(user: int, text: str = "We are on it", **fields: Any) -> OutboundCommand:
    return OutboundCommand(
        customer_id=uuid.uuid4(),
        channel="telegram",
        to=Identity(type=IdentityType.TELEGRAM, scope=tg.BOT_ID, value=str(user)),
        text=text,
        **fields,
    )


async def test_a_reply_is_sent_with_the_token_in_the_path(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    user = tg.new_user()
    result = await adapter.send(reply(user))
    [call] = api.to(user)
    assert (call.token, call.status, call.params["text"]) == (tg.TOKEN, 200, "We are on it")
    sent = call.answer["result"]["message_id"]
    assert result.provider_message_id == f"{tg.BOT_ID}:{user}:{sent}"


async def test_files_go_as_photo_or_document_from_the_blob_store(hub: Any, fake: Any) -> None:
    adapter, _, blobs = hub
    api, _ = fake
    user, event = tg.new_user(), uuid.uuid4()
    await blobs.put(f"{event}/0", tg.PHOTO)
    await blobs.put(f"{event}/1", b"%PDF-1.4 invoice")
    files = [
        Attachment(name="shot.jpg", content_type="image/jpeg", blob=f"{event}/0"),
        Attachment(name="invoice.pdf", content_type="application/pdf", blob=f"{event}/1"),
    ]
    await adapter.send(reply(user, "Here you are", attachments=files))
    [photo] = api.to(user, "sendPhoto")
    [document] = api.to(user, "sendDocument")
    assert photo.files["photo"][1] == tg.PHOTO and photo.status == 200
    assert document.files["document"][:2] == ("invoice.pdf", b"%PDF-1.4 invoice")


async def test_a_blocked_bot_fails_at_once_and_marks_the_customer(hub: Any, fake: Any) -> None:
    adapter, publisher, _ = hub
    api, _ = fake
    user = tg.new_user()
    api.blocked.add(user)
    command = reply(user)
    with pytest.raises(SendError) as caught:
        await adapter.send(command)
    assert caught.value.code == "blocked" and not caught.value.retryable
    assert "blocked the bot" in str(caught.value)
    assert len(api.to(user)) == 1  # never retried
    [state] = publisher.events
    assert isinstance(state, DeliveryStatus)
    assert (state.command_id, state.state.value, state.error_code) == (
        command.command_id,
        "failed",
        "blocked",
    )
    assert state.undeliverable == command.to


async def test_retry_after_is_waited_out(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    user = tg.new_user()
    api.rate_limited[user] = [1]
    await adapter.send(reply(user))
    first, second = api.to(user)
    assert (first.status, second.status) == (429, 200)
    assert second.at - first.at >= 1.0  # as Telegram asked, not a tight loop


async def test_a_retry_after_too_long_fails_the_send_as_rate_limited(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    user = tg.new_user()
    api.rate_limited[user] = [30]  # over TELEGRAM_MAX_RETRY_AFTER (3 s here)
    started = time.monotonic()
    with pytest.raises(SendError) as caught:
        await adapter.send(reply(user))
    assert caught.value.code == "rate_limited" and caught.value.retryable
    assert "retry after 30 s" in str(caught.value)
    assert time.monotonic() - started < 3 and len(api.to(user)) == 1


async def test_server_errors_are_retried_and_refusals_are_not(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    user = tg.new_user()
    api.failing[user] = 2
    await adapter.send(reply(user))
    assert [c.status for c in api.to(user)] == [500, 500, 200]
    with pytest.raises(SendError) as caught:
        await adapter.send(reply(tg.new_user(), text=" "))
    assert caught.value.code == "bad_request"
    assert "message text is empty" in str(caught.value)


async def test_what_cannot_be_sent_is_refused_before_calling(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    before = len(api.calls)
    other_bot = reply(1)
    other_bot = other_bot.model_copy(
        update={"to": Identity(type=IdentityType.TELEGRAM, scope="987654321", value="1")}
    )
    with pytest.raises(SendError) as caught:
        await adapter.send(other_bot)
    assert caught.value.code == "other_bot"
    email = reply(1).model_copy(update={"to": Identity(type="email", value="a@example.com")})
    with pytest.raises(SendError) as caught:
        await adapter.send(email)
    assert caught.value.code == "no_telegram_id"
    assert len(api.calls) == before


async def test_a_wrong_token_and_no_server_are_clear_failures(fake: Any) -> None:
    _, port = fake
    wrong = dict(
        tg.telegram_env(port), TELEGRAM_BOT_TOKEN=f"{tg.BOT_ID}:AAanotherTokenEntirely_000000"
    )
    adapter = TelegramAdapter(TelegramSettings(**wrong))  # type: ignore[arg-type]
    gone = TelegramAdapter(TelegramSettings(**tg.telegram_env(free_port())))  # type: ignore[arg-type]
    try:
        with pytest.raises(SendError) as caught:
            await adapter.send(reply(1))
        assert caught.value.code == "unauthorized"
        with pytest.raises(SendError) as caught:
            await gone.send(reply(1))
        assert caught.value.code == "network" and tg.TOKEN not in str(caught.value)
    finally:
        await adapter.close()
        await gone.close()


# --- reading staged updates -----------------------------------------------------------------


def staged(body: dict[str, Any]) -> StagedInput:
    return StagedInput(
        adapter="telegram",
        via="webhook",
        order_key="t",
        payload=json.dumps(body).encode(),
    )


async def test_unstage_fetches_the_photo_through_getfile(hub: Any, fake: Any) -> None:
    adapter, _, blobs = hub
    api, _ = fake
    api.files["AgACAgIAAxkBAAIBVmXg"] = ("photos/file_7.jpg", tg.PHOTO, "image/jpeg")
    [event] = await adapter.unstage([staged(tg.update("update_reply_with_photo.json"))])
    assert isinstance(event, Interaction)
    [photo] = event.attachments
    assert photo.blob == f"{event.event_id}/0" and photo.size == len(tg.PHOTO)
    assert await blobs.get(photo.blob) == tg.PHOTO
    assert "photos/file_7.jpg" in api.downloads
    assert [c.params["file_id"] for c in api.calls if c.method == "getFile"] == [
        "AgACAgIAAxkBAAIBVmXg"
    ]


async def test_a_file_that_cannot_be_had_leaves_the_message(hub: Any, fake: Any) -> None:
    adapter, _, _ = hub
    api, _ = fake
    api.files["AgACAgIAAxkBAAIBVmXg"] = ("photos/file_8.jpg", tg.PHOTO, "image/jpeg")
    api.broken.add("AgACAgIAAxkBAAIBVmXg")
    big = tg.update(document={"file_id": "BIG", "file_name": "x.iso", "file_size": 10**9})
    photo, document = await adapter.unstage(
        [staged(tg.update("update_reply_with_photo.json")), staged(big)]
    )
    assert isinstance(photo, Interaction) and isinstance(document, Interaction)
    assert photo.text == "Hier ist das Foto" and photo.attachments[0].blob is None
    assert photo.attributes["media_unavailable"] == 1
    assert "HTTP 500" in str(photo.attributes["media_error"])
    assert document.attachments[0].blob is None
    assert "TELEGRAM_MAX_MEDIA_BYTES" in str(document.attributes["media_error"])


async def test_ignored_updates_are_dead_lettered_with_the_reason(hub: Any, fake: Any) -> None:
    adapter, publisher, _ = hub
    api, _ = fake
    press = tg.callback(tg.new_user(), "yes")
    events = await adapter.unstage(
        [staged(tg.in_group(tg.new_user(), "hi all")), staged(press), staged({"update_id": 3})]
    )
    assert [e.text for e in events if isinstance(e, Interaction)] == ["yes"]
    reasons = [reason for _, reason, stage in publisher.dead if stage == "channels/telegram"]
    assert len(reasons) == 2 and "TELEGRAM_GROUPS=ignore" in reasons[0]
    assert adapter.unstaged["ignored"] == 2
    [answered] = [c for c in api.calls if c.method == "answerCallbackQuery"]
    assert answered.params["callback_query_id"] == press["callback_query"]["id"]

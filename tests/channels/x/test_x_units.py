"""The X adapter in-process: the samples' CRC and signature vectors, parsing every event
shape, the switch, and sending against the loopback stand-in for X's API (``FakeX``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels import registry
from channels.base import (
    UNRESOLVED_COMMAND,
    FileBlobStore,
    InboundRequest,
    SendError,
    SignatureError,
)
from channels.x import XAdapter
from channels.x.config import XSettings
from channels.x.oauth import signature
from channels.x.parse import parse_payload
from channels.x.send import CredentialsRefused
from channels.x.verify import check_signature, crc_response
from schemas import (
    Channel,
    DeliveryState,
    DeliveryStatus,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    OutboundCommand,
)
from services.adapters import build_adapters
from services.stack.ports import free_port
from tests.channels.x import support as x
from tests.channels.x.support import FakeX

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def parse(body: dict[str, Any] | bytes, **kwargs: Any) -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_payload(content, received_at=NOW, **kwargs)


# --- the samples' vectors ----------------------------------------------------------------


def test_the_crc_answer_is_the_samples_response_token() -> None:
    sample = (x.SAMPLES / "crc_check.http").read_text()
    token = sample.split("crc_token=", 1)[1].split("&", 1)[0]
    answer = next(line for line in sample.splitlines() if line.startswith('{"response_token"'))
    expected = json.loads(answer)
    assert crc_response(x.CONSUMER_SECRET, token) == expected
    assert expected["response_token"] == "sha256=Cytd4Sq+NvEcV3MMrXxWJGJx5A+y/lXzzU2Maartkx8="


def test_the_samples_signature_verifies_and_others_do_not() -> None:
    body = x.sample_bytes("aaa_direct_message_events.json")
    check_signature(x.CONSUMER_SECRET, body, x.sample_signature())
    for secret, given in (
        (x.CONSUMER_SECRET, None),
        (x.CONSUMER_SECRET, ""),
        (x.CONSUMER_SECRET, x.sample_signature().replace("sha256=", "sha1=")),
        ("another secret", x.sample_signature()),
        (None, x.sample_signature()),
    ):
        with pytest.raises(SignatureError):
            check_signature(secret, body, given)
    with pytest.raises(SignatureError):
        check_signature(x.CONSUMER_SECRET, body + b"\n", x.sample_signature())


def test_oauth1_signs_xs_documented_example() -> None:
    """X's "Creating a signature" page: its parameters, secrets and resulting signature."""
    params = [
        ("include_entities", "true"),
        ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
        ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", "1318622958"),
        ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
        ("oauth_version", "1.0"),
    ]
    assert (
        signature(
            "POST",
            "https://api.twitter.com/1.1/statuses/update.json",
            params,
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        )
        == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="
    )


# --- parsing ---------------------------------------------------------------------------------


def test_the_dm_sample_is_an_inbound_message_of_the_sender() -> None:
    parsed = parse(x.sample_bytes("aaa_direct_message_events.json"), account=x.ACCOUNT)
    [event] = parsed.events
    assert isinstance(event, Interaction)
    assert (event.channel.value, event.direction) == ("x", Direction.INBOUND)
    assert event.text == "Hello World!"
    assert event.identities == [Identity(type=IdentityType.X, scope=x.ACCOUNT, value=x.CUSTOMER)]
    assert event.provider_message_id == "954491830116155396"
    assert event.occurred_at == datetime(2018, 1, 19, 23, 12, 40, 557000, tzinfo=UTC)
    assert event.attributes == {"sender_name": "Jordan Brinks", "username": "furiouscamper"}
    assert event.thread is not None and event.thread.id == f"{x.CUSTOMER}-{x.ACCOUNT}"
    assert not parsed.unusable and not parsed.ignored


def test_the_accounts_own_dm_is_outbound_and_the_hubs_own_an_echo() -> None:
    user = x.new_user()
    [own] = parse(x.dm(user, "Sent from the app", own=True), app_id=x.APP_ID).events
    assert isinstance(own, Interaction)
    assert own.direction is Direction.OUTBOUND
    assert own.identities[0].value == user
    assert own.attributes["sent_from"] == "x"
    echo = parse(x.dm(user, "Sent by the hub", own=True, app=x.APP_ID), app_id=x.APP_ID)
    assert echo.events == [] and echo.ignored == {"echo": 1} and not echo.unusable


def test_a_quick_reply_a_photo_and_links() -> None:
    body = x.dm(text="Option A https://t.co/zzz", quick_reply="plan-a")
    body["direct_message_events"][0]["message_create"]["message_data"]["entities"]["urls"] = [
        {"url": "https://t.co/zzz", "expanded_url": "https://example.com/plans/a"}
    ]
    [reply] = parse(body).events
    assert reply.text == "Option A https://example.com/plans/a"
    assert reply.attributes["quick_reply"] == "plan-a"
    url = "https://ton.twitter.com/1.1/ton/data/dm/1/2/Tm-k6QVR.jpg"
    parsed = parse(x.dm(text="look https://t.co/abcDEF123", media=x.photo(url)))
    [message] = parsed.events
    assert message.text == "look"
    [file] = message.attachments
    assert (file.url, file.content_type, file.name) == (url, "image/jpeg", "Tm-k6QVR.jpg")
    assert [(f.event_id, f.index, f.url) for f in parsed.fetches] == [(message.event_id, 0, url)]


def test_reads_typing_and_unknown_events() -> None:
    [state] = parse(x.read_event(x.CUSTOMER, "963085315333238788")).events
    assert isinstance(state, DeliveryStatus)
    assert (state.command_id, state.state, state.provider_message_id) == (
        UNRESOLVED_COMMAND,
        DeliveryState.READ,
        "963085315333238788",
    )
    own = parse(x.read_event(x.ACCOUNT, x.new_id()))
    assert own.events == [] and own.ignored == {"read_by_account": 1}
    typing = parse(x.sample_bytes("aaa_typing_event.json"))
    assert typing.events == [] and typing.ignored == {"typing": 1} and not typing.unusable
    mixed = x.dm()
    mixed["favorite_events"] = [{"id": "1"}]
    parsed = parse(mixed)
    assert len(parsed.events) == 1
    assert parsed.unusable == ["X event type 'favorite_events' is not handled by the hub"]


def test_many_dms_in_one_payload_are_all_read() -> None:
    body = x.dm()
    first = body["direct_message_events"][0]
    second = json.loads(json.dumps(first))
    second["id"] = x.new_id()
    second["message_create"]["message_data"]["text"] = "and another"
    body["direct_message_events"].append(second)
    assert [e.text for e in parse(body).events] == ["Hello World!", "and another"]


# --- the switch ------------------------------------------------------------------------------


def test_the_default_channel_list_leaves_x_out_unless_enabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What `omnihub up` runs (`run api` and the dispatcher with OMNIHUB_CHANNELS empty)."""
    monkeypatch.delenv("X_ENABLED", raising=False)
    assert "x" in registry.manifests()
    assert "x" not in [m.name for m in registry.selected([])]
    assert "x" not in build_adapters([])
    assert [m.name for m in registry.selected(["x"])] == ["x"]  # named: still served
    monkeypatch.setenv("X_ENABLED", "false")
    assert "x" not in build_adapters([])
    monkeypatch.setenv("X_ENABLED", "true")
    assert "x" in [m.name for m in registry.selected([])]
    assert isinstance(build_adapters([])["x"], XAdapter)


async def test_switched_off_it_accepts_nothing_and_refuses_to_send() -> None:
    adapter = XAdapter(XSettings(X_ENABLED=False, X_CONSUMER_SECRET=x.CONSUMER_SECRET))
    crc, events = XAdapter.routes
    get = InboundRequest("GET", x.WEBHOOK, {}, query={"crc_token": "abc"})
    content, good = x.signed(x.dm())
    post = InboundRequest("POST", x.WEBHOOK, {x.HEADER: good}, content)
    for route, request in ((crc, get), (events, post)):
        with pytest.raises(SignatureError, match="X_ENABLED=false"):
            adapter.verify(request, route)
    with pytest.raises(SendError, match="X_ENABLED=false") as refused:
        await adapter.send(command(x.new_user()))
    assert refused.value.code == "channel_off"
    health = await adapter.health()
    assert health.ok and "switched off" in health.detail


# --- sending against the stand-in ----------------------------------------------------------


@pytest.fixture
async def fake_x() -> AsyncIterator[tuple[FakeX, int]]:
    fake = FakeX()
    port = free_port()
    runner = await fake.start(port)
    yield fake, port
    await runner.cleanup()


def adapter_for(port: int, tmp_path: Path, **changes: str) -> XAdapter:
    env = {**x.x_env(port), "X_HEALTH_CHECK_SECONDS": "0", **changes}
    adapter = XAdapter(XSettings(**env))  # type: ignore[arg-type]
    adapter.attach(RecordingPublisher(), blobs=FileBlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
    return adapter


class RecordingPublisher:
    """Keeps what an adapter dead-letters."""

    def __init__(self) -> None:
        self.dead: list[tuple[bytes, str, str]] = []

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        self.dead.append((request.body, reason, stage))


def command(user: str, text: str = "Thanks, we are on it", **fields: Any) -> OutboundCommand:
    import uuid

    return OutboundCommand(
        customer_id=uuid.uuid4(),
        channel=Channel.X,
        to=Identity(type=IdentityType.X, scope=x.ACCOUNT, value=user),
        text=text,
        **fields,
    )


async def test_a_reply_is_a_dm_signed_with_oauth1(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path)
    user = x.new_user()
    result = await adapter.send(command(user, "Your refund is on its way"))
    [call] = fake.to(user)
    assert call.status == 201 and call.auth.startswith("OAuth ")
    assert call.body == {"text": "Your refund is on its way"}
    assert result.provider_message_id == call.answer["data"]["dm_event_id"]
    assert result.state is DeliveryState.SENT
    await adapter.close()


async def test_a_reply_with_the_oauth2_user_token_and_an_image(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path, X_OAUTH2_USER_TOKEN=x.BEARER)
    import uuid

    event = uuid.uuid4()
    await adapter.blobs.put(f"{event}/0", x.PHOTO)
    user = x.new_user()
    attachment = {"name": "receipt.jpg", "content_type": "image/jpeg", "blob": f"{event}/0"}
    await adapter.send(command(user, "Here is the receipt", attachments=[attachment]))
    [upload] = [c for c in fake.calls if c.path == "/2/media/upload"]
    assert upload.auth == f"Bearer {x.BEARER}" and upload.body["media_category"] == "dm_image"
    [call] = fake.to(user)
    media_id = call.body["attachments"][0]["media_id"]
    assert fake.uploads[media_id] == x.PHOTO
    pdf = {"name": "a.pdf", "content_type": "application/pdf", "blob": f"{event}/0"}
    with pytest.raises(SendError) as refused:
        await adapter.send(command(user, "and a PDF", attachments=[pdf]))
    assert refused.value.code == "unsupported_media"
    await adapter.close()


async def test_429_is_waited_out_until_the_reset_never_at_once(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path)
    user = x.new_user()
    fake.rate_limited[user] = [2]
    started = time.monotonic()
    await adapter.send(command(user))
    first, second = fake.to(user)
    assert (first.status, second.status) == (429, 201)
    # the reset is whole seconds of the epoch: at least one second passed, never a tight retry
    assert second.at - first.at >= 1.0
    assert time.monotonic() - started < 5
    # a reset beyond X_MAX_RETRY_AFTER fails the send as rate limited, after one call
    later = x.new_user()
    fake.rate_limited[later] = [900]
    with pytest.raises(SendError) as limited:
        await adapter.send(command(later))
    assert limited.value.code == "rate_limited" and limited.value.retryable
    assert "again in" in str(limited.value)
    assert len(fake.to(later)) == 1
    await adapter.close()


async def test_401_makes_it_unhealthy_and_keeps_the_message_for_later(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path)
    user = x.new_user()
    assert (await adapter.health()).ok
    fake.revoked = True
    with pytest.raises(CredentialsRefused) as refused:
        await adapter.send(command(user))
    # not a SendError (which fails the message): an OSError, retried by the dispatcher
    assert isinstance(refused.value, OSError) and not isinstance(refused.value, SendError)
    assert len(fake.to(user)) == 1
    health = await adapter.health()
    assert not health.ok and "401" in health.detail
    fake.revoked = False
    await adapter.send(command(user))
    assert (await adapter.health()).ok
    await adapter.close()


async def test_health_asks_x_about_the_token(fake_x: tuple[FakeX, int], tmp_path: Path) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path, X_HEALTH_CHECK_SECONDS="0.01")
    fake.revoked = True
    assert not (await adapter.health()).ok
    fake.revoked = False
    await asyncio.sleep(0.02)
    assert (await adapter.health()).ok
    assert [c.path for c in fake.calls] == ["/2/users/me", "/2/users/me"]
    await adapter.close()


async def test_a_user_who_takes_no_dms_fails_the_message(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path)
    user = x.new_user()
    fake.closed.add(user)
    with pytest.raises(SendError) as refused:
        await adapter.send(command(user))
    assert refused.value.code == "forbidden"
    assert "not allowed to send Direct Messages" in str(refused.value)
    assert (await adapter.health()).ok  # one recipient's refusal: the channel is fine
    wrong = Identity(type=IdentityType.X, scope="42", value=user)
    with pytest.raises(SendError) as other:
        await adapter.send(command(user).model_copy(update={"to": wrong}))
    assert other.value.code == "wrong_account"
    await adapter.close()


# --- unstaging: media and dead letters -----------------------------------------------------


def staged(body: dict[str, Any]) -> Any:
    from schemas import StagedInput

    return StagedInput(
        adapter="x", via="webhook", order_key=x.ACCOUNT, payload=json.dumps(body).encode()
    )


async def test_dm_media_is_fetched_with_user_context_auth(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    fake, port = fake_x
    adapter = adapter_for(port, tmp_path)
    fake.media["/ton/1.1/ton/data/dm/1/2/photo.jpg"] = (x.PHOTO, "image/jpeg")
    good = x.dm(media=x.photo(f"http://127.0.0.1:{port}/ton/1.1/ton/data/dm/1/2/photo.jpg"))
    fake.broken.add("/ton/broken.jpg")
    broken = x.dm(media=x.photo(f"http://127.0.0.1:{port}/ton/broken.jpg"))
    elsewhere = x.dm(media=x.photo("http://example.com/ton/evil.jpg"))
    first, second, third = await adapter.unstage([staged(good), staged(broken), staged(elsewhere)])
    assert isinstance(first, Interaction)
    [file] = first.attachments
    assert file.blob == f"{first.event_id}/0" and file.size == len(x.PHOTO)
    assert await adapter.blobs.get(file.blob) == x.PHOTO
    [download] = [c for c in fake.calls if c.path.endswith("photo.jpg")]
    assert download.auth.startswith("OAuth ") and download.status == 200
    for kept in (second, third):  # the message is kept, its file marked unavailable
        assert isinstance(kept, Interaction)
        assert kept.attachments[0].blob is None and kept.attributes["media_unavailable"] == 1
    assert fake.broken and fake.downloads.count("/ton/broken.jpg") == 3  # retried, backed off
    assert not any("evil" in d for d in fake.downloads)  # never fetched from elsewhere
    await adapter.close()


async def test_unusable_payloads_are_dead_lettered_with_their_reason(
    fake_x: tuple[FakeX, int], tmp_path: Path
) -> None:
    _, port = fake_x
    adapter = adapter_for(port, tmp_path)
    tweet = {"for_user_id": x.ACCOUNT, "tweet_create_events": [{"id_str": "1"}]}
    other = dict(x.dm(), for_user_id="999")
    typing = json.loads(x.sample_bytes("aaa_typing_event.json"))
    events = await adapter.unstage([staged(tweet), staged(other), staged(typing)])
    assert events == []
    publisher = adapter.publisher
    assert isinstance(publisher, RecordingPublisher)
    reasons = [reason for _, reason, stage in publisher.dead if stage == "channels/x"]
    assert reasons == [
        "X event type 'tweet_create_events' is not handled by the hub",
        "for_user_id 999 is not this hub's account (X_USER_ID)",
    ]
    assert adapter.unstaged["ignored:typing"] == 1
    await adapter.close()

"""``MediaAdapter.refetch`` of the Meta, Telegram and X adapters against their loopback
stand-ins: a file fetched again from what the stored attachment recorded, and a reason an
agent can read when the platform does not give it (an expired Messenger address among them)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channels.base import FileBlobStore, MediaAdapter, MediaRefused, MediaUnavailable
from channels.meta import MetaAdapter
from channels.meta.config import MetaSettings
from channels.meta.parse import parse_body
from channels.telegram import TelegramAdapter
from channels.telegram.config import TelegramSettings
from channels.x import XAdapter
from channels.x.config import XSettings
from schemas import Attachment, Channel, Direction, Identity, IdentityType, Interaction, Kind
from services.stack.ports import free_port
from tests.channels.meta import support as meta
from tests.channels.meta.support import FakeGraph
from tests.channels.telegram import support as tg
from tests.channels.telegram.support import FakeBotApi
from tests.channels.x import support as x
from tests.channels.x.support import FakeX

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def message(channel: Channel, identity: Identity, *files: Attachment) -> Interaction:
    """A stored inbound message with ``files``, none of them in the blob store."""
    return Interaction.create(
        channel=channel,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        occurred_at=NOW,
        identities=[identity],
        attachments=list(files),
        provider_message_id=uuid.uuid4().hex,
    )


async def served(port: int, fake: Any) -> AsyncIterator[Any]:
    runner = await fake.start(port)
    yield fake
    await runner.cleanup()


def test_the_social_adapters_fetch_media_again() -> None:
    for adapter in (MetaAdapter, TelegramAdapter, XAdapter):
        assert issubclass(adapter, MediaAdapter)


# --- Telegram: the file_id again, through getFile ------------------------------------------


@pytest.fixture
async def telegram(tmp_path: Path) -> AsyncIterator[tuple[TelegramAdapter, FakeBotApi]]:
    port = free_port()
    async for fake in served(port, FakeBotApi()):
        adapter = TelegramAdapter(TelegramSettings(**tg.telegram_env(port)))  # type: ignore[arg-type]
        adapter.attach(None, blobs=FileBlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
        yield adapter, fake
        await adapter.close()


async def test_telegram_fetches_the_file_id_again(
    telegram: tuple[TelegramAdapter, FakeBotApi],
) -> None:
    adapter, fake = telegram
    file_id = "BQAC" + uuid.uuid4().hex
    fake.files[file_id] = (f"documents/{file_id}.pdf", b"%PDF-1.4 contract", "application/pdf")
    fake.broken.add(file_id)
    user = Identity(type=IdentityType.TELEGRAM, scope=tg.BOT_ID, value=str(tg.new_user()))
    file = Attachment(name="contract.pdf", content_type="application/pdf", provider_id=file_id)
    stored = message(Channel.TELEGRAM, user, file)
    with pytest.raises(MediaUnavailable, match="HTTP 500"):
        await adapter.refetch(file, stored)
    assert fake.downloads.count(f"documents/{file_id}.pdf") == 3  # with back-off, as unstage
    fake.broken.discard(file_id)
    media = await adapter.refetch(file, stored)
    assert (media.data, media.content_type) == (b"%PDF-1.4 contract", "application/pdf")
    gone = file.model_copy(update={"provider_id": "BQACgone"})
    with pytest.raises(MediaUnavailable, match=r"Telegram did not give the file: .*invalid"):
        await adapter.refetch(gone, stored)
    with pytest.raises(MediaRefused, match="no Telegram file"):
        await adapter.refetch(Attachment(name="location", url="geo:1,2"), stored)
    too_large = file.model_copy(update={"size": 10**9})
    with pytest.raises(MediaRefused, match="larger than"):
        await adapter.refetch(too_large, stored)


# --- Meta: WhatsApp's media id through the Graph API; Messenger's CDN address --------------


@pytest.fixture
async def graph(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[MetaAdapter, FakeGraph]]:
    port = free_port()
    for name, value in meta.meta_env(port).items():
        monkeypatch.setenv(name, value)
    async for fake in served(port, FakeGraph()):
        adapter = MetaAdapter(MetaSettings())
        adapter.attach(None, blobs=FileBlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
        yield adapter, fake
        await adapter.close()


async def test_meta_fetches_a_whatsapp_media_id_again(
    graph: tuple[MetaAdapter, FakeGraph],
) -> None:
    adapter, fake = graph
    media_id = str(uuid.uuid4().int)[:15]
    number = "+" + meta.new_wa_id()
    user = Identity(type=IdentityType.WHATSAPP, value=number)
    file = Attachment(name="image", content_type="image/jpeg", provider_id=media_id)
    stored = message(Channel.WHATSAPP, user, file)
    with pytest.raises(MediaUnavailable, match="Graph API did not give the media's address"):
        await adapter.refetch(file, stored)
    fake.media[media_id] = meta.PNG
    media = await adapter.refetch(file, stored)
    assert (media.data, media.content_type) == (meta.PNG, "image/png")
    asked = [c for c in fake.calls if c.path.endswith(f"/{media_id}")]
    assert asked and all(c.token == meta.WA_TOKEN for c in asked)
    with pytest.raises(MediaRefused, match="not a WhatsApp media id"):
        await adapter.refetch(file.model_copy(update={"provider_id": "../me"}), stored)


async def test_meta_fetches_a_messenger_address_again_and_says_when_it_expired(
    graph: tuple[MetaAdapter, FakeGraph],
) -> None:
    adapter, fake = graph
    user, mid = meta.new_id(), uuid.uuid4().hex
    address = f"http://127.0.0.1:{fake.port}/cdn/{mid}.png"
    image = {"type": "image", "payload": {"url": address}}
    body = meta.messenger(
        {
            "sender": {"id": user},
            "recipient": {"id": meta.PAGE_ID},
            "timestamp": 1749416383000,
            "message": {"mid": mid, "attachments": [image]},
        }
    )
    [stored] = parse_body(body, NOW).events
    assert isinstance(stored, Interaction)
    [file] = stored.attachments
    assert file.url == address  # recorded, so the file can be fetched again
    media = await adapter.refetch(file, stored)
    assert media.data == meta.PNG
    fake.expired.add(f"{mid}.png")
    with pytest.raises(MediaUnavailable, match=r"no longer gives the file .*expire.*HTTP 403"):
        await adapter.refetch(file, stored)
    with pytest.raises(MediaRefused, match="without the file's address"):
        await adapter.refetch(file.model_copy(update={"url": None}), stored)
    elsewhere = file.model_copy(update={"url": "http://example.com/cdn/evil.png"})
    with pytest.raises(MediaRefused, match="not one of the platform's hosts"):
        await adapter.refetch(elsewhere, stored)


# --- X: the DM media address, with the account's authorization ----------------------------


@pytest.fixture
async def x_api(tmp_path: Path) -> AsyncIterator[tuple[XAdapter, FakeX, int]]:
    port = free_port()
    async for fake in served(port, FakeX()):
        env = {**x.x_env(port), "X_HEALTH_CHECK_SECONDS": "0"}
        adapter = XAdapter(XSettings(**env))  # type: ignore[arg-type]
        adapter.attach(None, blobs=FileBlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
        yield adapter, fake, port
        await adapter.close()


async def test_x_fetches_the_media_address_again(x_api: tuple[XAdapter, FakeX, int]) -> None:
    adapter, fake, port = x_api
    path = f"/ton/1.1/ton/data/dm/{uuid.uuid4().hex}/photo.jpg"
    file = Attachment(
        name="photo.jpg", content_type="image/*", url=f"http://127.0.0.1:{port}{path}"
    )
    user = Identity(type=IdentityType.X, scope=x.ACCOUNT, value=x.new_user())
    stored = message(Channel.X, user, file)
    fake.media[path] = (x.PHOTO, "image/jpeg")
    fake.broken.add(path)
    with pytest.raises(MediaUnavailable, match="HTTP 500"):
        await adapter.refetch(file, stored)
    fake.broken.discard(path)
    media = await adapter.refetch(file, stored)
    assert (media.data, media.content_type) == (x.PHOTO, "image/jpeg")
    [*_, last] = [c for c in fake.calls if c.path == path]
    assert last.auth.startswith("OAuth ") and last.status == 200
    with pytest.raises(MediaRefused, match="no media address"):
        await adapter.refetch(file.model_copy(update={"url": None}), stored)

"""The hub's blob stores keep the same promises: the directory (FileBlobStore) and S3
(S3BlobStore, against a real SeaweedFS on loopback) pass the same tests, and
``blob_store(settings)`` picks S3 only when OMNIHUB_BLOB_S3_URL is set."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from channels.base import BlobMissing, BlobStore, FileBlobStore, blob_id
from services.blobs import S3BlobStore, blob_store, close_blob_store, parse_s3_url
from services.config import Settings
from services.stack.s3 import BUCKET, REGION, EmbeddedS3


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One SeaweedFS for the module, its key pair in the AWS_* variables (the credential
    chain the S3 store documents); each store uses a prefix of its own."""
    root = tmp_path_factory.mktemp("blobs-s3")
    server = EmbeddedS3(root / "s3", root / "logs")
    server.start()
    try:
        with pytest.MonkeyPatch.context() as env:
            for name, value in server.client_env().items():
                env.setenv(name, value)
            yield server
    finally:
        server.stop()


def s3_store(server: EmbeddedS3, prefix: str | None = None) -> S3BlobStore:
    return S3BlobStore(
        BUCKET,
        prefix if prefix is not None else f"test-{uuid.uuid4().hex}/",
        endpoint=server.endpoint,
        region=REGION,
    )


@pytest.fixture(params=["directory", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    """Each behavioural test runs once per store."""
    if request.param == "directory":
        yield FileBlobStore(tmp_path / "blobs")
        return
    made = s3_store(request.getfixturevalue("s3"))
    yield made
    await made.close()


async def test_put_then_get_returns_the_bytes(store: BlobStore) -> None:
    event = uuid.uuid4()
    payloads = [bytes(range(256)) * 4096, b"", "héllo\r\n".encode()]
    for n, data in enumerate(payloads):
        await store.put(blob_id(event, n), data)
    assert [await store.get(blob_id(event, n)) for n in range(len(payloads))] == payloads


async def test_a_second_put_replaces_the_first(store: BlobStore) -> None:
    blob = blob_id(uuid.uuid4(), 0)
    await store.put(blob, b"first attempt, longer than the second")
    await store.put(blob, b"second")
    assert await store.get(blob) == b"second"


async def test_a_blob_never_stored_is_missing(store: BlobStore) -> None:
    event = uuid.uuid4()
    await store.put(blob_id(event, 0), b"there")
    with pytest.raises(BlobMissing):
        await store.get(blob_id(event, 1))
    with pytest.raises(BlobMissing):
        await store.get(blob_id(uuid.uuid4(), 0))
    with pytest.raises(ValueError):
        await store.get("../../etc/passwd")


async def test_delete_event_deletes_that_events_blobs_only(store: BlobStore) -> None:
    erased, kept = uuid.uuid4(), uuid.uuid4()
    for n in range(3):
        await store.put(blob_id(erased, n), f"erased {n}".encode())
    for n in range(2):
        await store.put(blob_id(kept, n), f"kept {n}".encode())

    assert await store.delete_event(erased) == 3

    for n in range(3):
        with pytest.raises(BlobMissing):
            await store.get(blob_id(erased, n))
    assert [await store.get(blob_id(kept, n)) for n in range(2)] == [b"kept 0", b"kept 1"]
    assert await store.delete_event(erased) == 0
    assert await store.delete_event(uuid.uuid4()) == 0


async def test_concurrent_puts_all_land_whole(store: BlobStore) -> None:
    events = [uuid.uuid4() for _ in range(4)]
    blobs = {
        blob_id(event, n): f"{event}/{n}".encode() * 500 for event in events for n in range(10)
    }
    await asyncio.gather(*(store.put(blob, data) for blob, data in blobs.items()))
    assert {blob: await store.get(blob) for blob in blobs} == blobs

    # the same message arriving twice at once (SMTP and an IMAP re-poll): one write wins whole
    racing = blob_id(events[0], 99)
    attempts = [bytes([n]) * 100_000 for n in range(8)]
    await asyncio.gather(*(store.put(racing, data) for data in attempts))
    assert await store.get(racing) in attempts

    assert [await store.delete_event(event) for event in events] == [11, 10, 10, 10]


async def test_the_settings_choose_s3_with_its_url(s3: EmbeddedS3, tmp_path: Path) -> None:
    """OMNIHUB_BLOB_S3_URL's bucket and prefix (objects ``<prefix>/<event id>/<n>``, read
    back here with a plain signed GET), its endpoint and region; the prefix keeps two hubs
    sharing a bucket apart."""
    prefix = f"hub-{uuid.uuid4().hex}/nested"
    settings = Settings(
        OMNIHUB_DATA_DIR=tmp_path,
        OMNIHUB_BLOB_DIR=tmp_path / "unused",
        OMNIHUB_BLOB_S3_URL=f"s3://{BUCKET}/{prefix}/",
        OMNIHUB_BLOB_S3_ENDPOINT=s3.endpoint,
        OMNIHUB_BLOB_S3_REGION=REGION,
    )
    chosen = blob_store(settings)
    assert isinstance(chosen, S3BlobStore)
    neighbour = s3_store(s3, f"other-{uuid.uuid4().hex}/")
    try:
        event = uuid.uuid4()
        await chosen.put(blob_id(event, 0), b"attachment")
        await neighbour.put(blob_id(event, 0), b"the other hub's")
        status, _, body = await asyncio.to_thread(
            s3.client().request, "GET", f"/{BUCKET}/{prefix}/{event}/0"
        )
        assert (status, body) == (200, b"attachment")
        assert not (tmp_path / "unused").exists()

        assert await chosen.delete_event(event) == 1
        with pytest.raises(BlobMissing):
            await chosen.get(blob_id(event, 0))
        assert await neighbour.get(blob_id(event, 0)) == b"the other hub's"
    finally:
        await close_blob_store(chosen)
        await neighbour.close()


async def test_the_settings_choose_the_directory_without_s3(tmp_path: Path) -> None:
    default = blob_store(Settings(OMNIHUB_DATA_DIR=tmp_path))
    assert isinstance(default, FileBlobStore)
    assert default.root == tmp_path / "blobs"

    chosen = blob_store(Settings(OMNIHUB_DATA_DIR=tmp_path, OMNIHUB_BLOB_DIR=tmp_path / "shared"))
    assert isinstance(chosen, FileBlobStore)
    blob = blob_id(uuid.uuid4(), 0)
    await chosen.put(blob, b"on the shared volume")
    assert await FileBlobStore(tmp_path / "shared").get(blob) == b"on the shared volume"
    await close_blob_store(chosen)  # nothing to close: must not fail


def test_s3_urls() -> None:
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b") == ("bucket", "a/b/")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b/")
    for wrong in ("http://bucket/a", "s3:///a", "bucket/a", "s3://bucket/a?x=1"):
        with pytest.raises(ValueError):
            parse_s3_url(wrong)

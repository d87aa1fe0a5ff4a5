"""Where adapters keep the files that arrive with messages (email attachments, inline
images): the hub's blob store, so events carry a reference and never the bytes.

A blob's id is chosen by the adapter and derived from the event it belongs to
(``blob_id(event_id, n)``): the same message arriving twice (SMTP and an IMAP re-poll) writes
the same blobs again instead of new ones, and erasing a customer deletes exactly the blobs of
their events (``delete_event``).
"""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from pathlib import Path
from typing import Protocol

#: ``<event id>/<n>``: what ``Attachment.blob`` holds.
BLOB_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9]{1,3}$")


class BlobMissing(LookupError):
    """No blob has that id (never stored, or erased)."""


def blob_id(event_id: uuid.UUID, index: int) -> str:
    """The id of the ``index``-th file of an event."""
    return f"{event_id}/{index}"


def event_of(blob: str) -> uuid.UUID:
    """The event a blob id belongs to; ValueError for anything that is not a blob id."""
    if not BLOB_ID.match(blob):
        raise ValueError(f"not a blob id: {blob[:80]!r}")
    return uuid.UUID(blob.partition("/")[0])


class BlobStore(Protocol):
    """Durable storage of files by id: ``put`` returns once the bytes would survive a crash."""

    async def put(self, blob: str, data: bytes) -> None:
        """Store ``data`` under ``blob`` (replacing what an earlier attempt stored)."""
        ...

    async def get(self, blob: str) -> bytes:
        """The bytes stored under ``blob``; BlobMissing when there are none."""
        ...

    async def delete_event(self, event_id: uuid.UUID) -> int:
        """Delete every blob of an event; how many there were."""
        ...


class FileBlobStore:
    """Blobs as files in a directory (``OMNIHUB_DATA_DIR/blobs`` by default): written to a
    temporary name, flushed to disk, then renamed, so a reader never sees half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _event_dir(self, event_id: uuid.UUID) -> Path:
        text = str(event_id)
        return self.root / text[:2] / text

    def _path(self, blob: str) -> Path:
        event = event_of(blob)
        return self._event_dir(event) / blob.partition("/")[2]

    async def put(self, blob: str, data: bytes) -> None:
        """Write and fsync in a worker thread: the event loop keeps serving meanwhile."""
        await asyncio.to_thread(self._write, self._path(blob), data)

    async def get(self, blob: str) -> bytes:
        """Read the file; BlobMissing when it does not exist."""
        try:
            return await asyncio.to_thread(self._path(blob).read_bytes)
        except FileNotFoundError as exc:
            raise BlobMissing(blob) from exc

    async def delete_event(self, event_id: uuid.UUID) -> int:
        """Remove the event's directory and what is in it."""
        return await asyncio.to_thread(self._remove, self._event_dir(event_id))

    @staticmethod
    def _write(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)

    @staticmethod
    def _remove(directory: Path) -> int:
        if not directory.is_dir():
            return 0
        removed = 0
        for child in directory.iterdir():
            child.unlink(missing_ok=True)
            removed += not child.name.startswith(".")
        directory.rmdir()
        return removed

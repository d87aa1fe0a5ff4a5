"""The files a customer's messages brought (attachments, inline images, a message's HTML),
from the hub's blob store: served only for files the timeline lists for that event, always
as a download (Content-Disposition: attachment, nosniff, the stored type, a sandboxing CSP),
so an SVG or HTML file never renders as a page of ours. The console and the API share this."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import HTTPException, Request, status
from fastapi.responses import Response

from channels.base import BlobMissing, BlobStore

#: A media type as stored (type/subtype, no parameters): anything else is served as bytes.
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
#: A downloaded file can do nothing even if a browser renders it anyway.
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}


async def interaction_of(
    request: Request, event_id: uuid.UUID, customer_id: uuid.UUID | None = None
) -> dict[str, Any]:
    """The interaction of a timeline event (of that customer, when named); 404 otherwise."""
    async with request.app.state.pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT interaction FROM timeline WHERE event_id = $1"
            " AND ($2::uuid IS NULL OR customer_id = $2)",
            event_id,
            customer_id,
        )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    return found if isinstance(found, dict) else json.loads(found)


def attachment_of(interaction: dict[str, Any], index: int) -> dict[str, Any]:
    """The ``index``-th attachment of ``interaction`` (from 1) with its bytes in the blob
    store (404 otherwise: no such attachment, or one listed without its bytes)."""
    attachments = interaction.get("attachments") or []
    if 1 <= index <= len(attachments) and attachments[index - 1].get("blob"):
        return dict(attachments[index - 1])
    raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")


def file_response(data: bytes, attachment: dict[str, Any]) -> Response:
    """A stored file as a download of its stored type and name."""
    media = str(attachment.get("content_type") or "").lower()
    name = str(attachment.get("name") or "attachment")
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "attachment"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"
    return Response(
        data,
        media_type=media if _MEDIA_TYPE.match(media) else "application/octet-stream",
        headers={**FILE_HEADERS, "Content-Disposition": disposition},
    )


async def read_blob(request: Request, blob: str) -> bytes:
    """The stored bytes (404 once erased or never stored)."""
    store: BlobStore = request.app.state.blobs
    try:
        return await store.get(blob)
    except BlobMissing:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the file is no longer kept") from None

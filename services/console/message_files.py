"""What a message brought besides its text, for agents: its files (attachments, inline
images) from the hub's blob store, and its HTML, sanitised. Served only to signed-in agents,
only for files the timeline says belong to the event, and never rendered by the browser as a
page of ours: a file is always a download (Content-Disposition: attachment, nosniff, a
sandboxing CSP), and the HTML view runs no script and loads no remote image until asked."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, Response

from channels.base import BlobMissing, BlobStore, blob_id
from channels.base.html import sanitized_html
from services.console.guard import Viewer

router = APIRouter(prefix="/console")

#: A media type as stored (type/subtype, no parameters): anything else is served as bytes.
_MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_CID = re.compile(r"""(src\s*=\s*["']?)cid:([^"'\s>]+)""", re.IGNORECASE)
#: A downloaded file can do nothing even if a browser renders it anyway.
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
    "Referrer-Policy": "no-referrer",
}


async def interaction_of(request: Request, event_id: uuid.UUID) -> dict[str, Any]:
    """The interaction of a timeline event (404 when there is none)."""
    async with request.app.state.pool.acquire() as conn:
        found = await conn.fetchval(
            "SELECT interaction FROM timeline WHERE event_id = $1", event_id
        )
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    return found if isinstance(found, dict) else json.loads(found)


def attachment_of(interaction: dict[str, Any], blob: str) -> dict[str, Any]:
    """The attachment of ``interaction`` stored as ``blob`` (404 when none is)."""
    for attachment in interaction.get("attachments") or []:
        if attachment.get("blob") == blob:
            return dict(attachment)
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


@router.get("/messages/{event_id}/files/{index}")
async def message_file(
    request: Request, session: Viewer, event_id: uuid.UUID, index: int
) -> Response:
    """One file of a message, as a download."""
    blob = blob_id(event_id, index)
    attachment = attachment_of(await interaction_of(request, event_id), blob)
    return file_response(await read_blob(request, blob), attachment)


@router.get("/messages/{event_id}/html")
async def message_html(
    request: Request, session: Viewer, event_id: uuid.UUID, images: bool = False
) -> Response:
    """The message as its sender formatted it, sanitised; its own images (``cid:``) served
    from the blob store, remote ones (tracking pixels among them) only with ``images=1``."""
    interaction = await interaction_of(request, event_id)
    blob = (interaction.get("attributes") or {}).get("html_blob")
    if not isinstance(blob, str) or not blob.startswith(f"{event_id}/"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this message has no HTML")
    html = (await read_blob(request, blob)).decode("utf-8", "replace")
    by_cid = {
        a["content_id"]: a["blob"]
        for a in interaction.get("attachments") or []
        if a.get("content_id") and a.get("blob")
    }

    def local(match: re.Match[str]) -> str:
        found = by_cid.get(match.group(2))
        if found is None:
            return f"{match.group(1)}data:,"
        index = found.partition("/")[2]
        return f"{match.group(1)}/console/messages/{event_id}/files/{index}"

    shown = _CID.sub(local, sanitized_html(html, remote_images=images))
    remote = "https: http:" if images else ""
    return HTMLResponse(
        "<!doctype html><meta charset=utf-8><title>Message</title>" + shown,
        headers={
            **FILE_HEADERS,
            "Content-Security-Policy": (
                f"default-src 'none'; img-src 'self' data: {remote}; style-src 'unsafe-inline';"
                " sandbox allow-popups allow-popups-to-escape-sandbox"
            ),
        },
    )

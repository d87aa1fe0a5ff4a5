"""What a message brought besides its text, for signed-in agents: its files (see
:mod:`services.customers.files`) and its HTML, sanitised, which runs no script and loads no
remote image until the agent asks."""

from __future__ import annotations

import re
import uuid

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from channels.base.html import sanitized_html
from services.console.guard import Viewer
from services.console.timeline import inline_image
from services.customers.files import (
    FILE_HEADERS,
    attachment_of,
    file_response,
    interaction_of,
    read_blob,
)

router = APIRouter(prefix="/console")

_CID = re.compile(r"""(src\s*=\s*["']?)cid:([^"'\s>]+)""", re.IGNORECASE)


@router.get("/messages/{event_id}/files/{index}")
async def message_file(
    request: Request, session: Viewer, event_id: uuid.UUID, index: int
) -> Response:
    """One file of a message, as a download."""
    attachment = attachment_of(await interaction_of(request, event_id), index)
    return file_response(await read_blob(request, attachment["blob"]), attachment)


#: How each image type shown inline begins: a file whose bytes are not what its stored type
#: says is not shown (a browser must never be handed HTML or SVG labelled as a picture).
_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


@router.get("/messages/{event_id}/images/{index}")
async def message_image(
    request: Request, session: Viewer, event_id: uuid.UUID, index: int
) -> Response:
    """One image of a message, inline, for the timeline's thumbnails: PNG, JPEG, GIF and
    WebP only (415 for anything else, SVG included), of the type stored, never sniffed."""
    attachment = attachment_of(await interaction_of(request, event_id), index)
    kind = inline_image(attachment.get("content_type"))
    if kind is None:
        return _not_inline("not an image shown inline; download it instead")
    data = await read_blob(request, attachment["blob"])
    if not data.startswith(_MAGIC[kind]) or (kind == "image/webp" and data[8:12] != b"WEBP"):
        return _not_inline(f"the file is not a {kind} image")
    return Response(
        data,
        media_type=kind,
        headers={
            **FILE_HEADERS,
            "Content-Disposition": "inline",
            "Cross-Origin-Resource-Policy": "same-origin",
        },
    )


def _not_inline(why: str) -> Response:
    return PlainTextResponse(why, status_code=415, headers=FILE_HEADERS)


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
        a["content_id"]: position
        for position, a in enumerate(interaction.get("attachments") or [], start=1)
        if a.get("content_id") and a.get("blob")
    }

    def local(match: re.Match[str]) -> str:
        position = by_cid.get(match.group(2))
        if position is None:
            return f"{match.group(1)}data:,"
        return f"{match.group(1)}/console/messages/{event_id}/files/{position}"

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

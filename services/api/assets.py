"""The browser files channels ship (``Manifest.assets``, e.g. the web chat widget), served by
the web processes at ``/channels/<name>/<file>``: public, cross-origin (a site's page loads
them), never sniffed; the loader cached five minutes, a file asked with the folder's current
``?v=<version>`` cached for a year (a new version is a new address)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, Response

from channels.base import Manifest

PLACEHOLDER = b"__OMNIHUB_ASSET_VERSION__"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
SHORT, LONG = "public, max-age=300", "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str
    version: str


def load(folder: Path) -> dict[str, Asset]:
    """The folder's files by name, the version placeholder filled in."""
    files = {
        p.name: p.read_bytes()
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix in TYPES
    }
    digest = hashlib.sha256()
    for name, data in files.items():
        digest.update(name.encode() + b"\0" + data + b"\0")
    version = digest.hexdigest()[:16]
    found = {}
    for name, data in files.items():
        body = data.replace(PLACEHOLDER, version.encode())
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        found[name] = Asset(body, TYPES[Path(name).suffix], etag, version)
    return found


def install(app: FastAPI, manifests: Iterable[Manifest]) -> None:
    """Serve each manifest's assets (outside the OpenAPI document: they are no API)."""
    served = {m.name: load(m.assets) for m in manifests if m.assets is not None}
    if not served:
        return

    async def asset(request: Request, channel: str, file: str) -> Response:
        found = served.get(channel, {}).get(file)
        if found is None:
            return Response(status_code=404, content=b"not found", media_type="text/plain")
        headers = {
            "ETag": found.etag,
            "Cache-Control": LONG if request.query_params.get("v") == found.version else SHORT,
            "X-Content-Type-Options": "nosniff",
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if request.headers.get("if-none-match") == found.etag:
            return Response(status_code=304, headers=headers)
        return Response(content=found.body, media_type=found.content_type, headers=headers)

    app.add_api_route(
        "/channels/{channel}/{file}", asset, methods=["GET", "HEAD"], include_in_schema=False
    )

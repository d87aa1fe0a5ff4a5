"""The files of Meta messages, fetched in the processors (never while Meta waits for its 200):
Messenger and Instagram name a CDN address; WhatsApp names a media id, whose short-lived
address the Graph API gives (``GET /{media-id}``) and which is downloaded with the token."""

from __future__ import annotations

import re

from channels.base.errors import SendError
from channels.base.media import Media, MediaFetcher, MediaRefused, MediaUnavailable
from channels.meta.config import MetaSettings
from channels.meta.send import GraphSender

#: What a WhatsApp media id looks like: digits (never a path of the payload's choosing).
MEDIA_ID = re.compile(r"^[0-9]{1,64}$")


class MetaMedia:
    """Fetches one adapter's media from Meta's hosts only, within the size limit."""

    def __init__(self, settings: MetaSettings, graph: GraphSender) -> None:
        self.settings = settings
        self.graph = graph
        schemes = ("https", "http") if settings.media_insecure_http else ("https",)
        self.fetcher = MediaFetcher(
            hosts=tuple(settings.media_hosts), max_bytes=settings.media_max_bytes, schemes=schemes
        )

    async def cdn(self, url: str | None) -> Media:
        """A Messenger or Instagram file from the address the message names (Meta's CDN)."""
        if not url:
            raise MediaRefused("the attachment names no address")
        return await self.fetcher.fetch(url)

    async def whatsapp(self, media_id: str) -> Media:
        """A WhatsApp file: its address from the Graph API, then the bytes, with the token."""
        token = self.settings.wa_token()
        if not token:
            raise MediaUnavailable("META_WHATSAPP_TOKEN is not set")
        if not MEDIA_ID.match(media_id):
            raise MediaRefused("not a WhatsApp media id")
        try:
            found = await self.graph.call("GET", f"/{media_id}", token)
        except SendError as exc:
            raise MediaUnavailable(
                f"the Graph API did not give the media's address: {exc}"
            ) from exc
        url = found.get("url")
        if not isinstance(url, str):
            raise MediaUnavailable("the Graph API gave no url for the media")
        size = found.get("file_size")
        if isinstance(size, int) and size > self.settings.media_max_bytes:
            raise MediaRefused(f"larger than {self.settings.media_max_bytes} bytes")
        return await self.fetcher.fetch(url, {"Authorization": f"Bearer {token}"})

    async def close(self) -> None:
        """Close the download client."""
        await self.fetcher.close()

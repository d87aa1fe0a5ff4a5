"""The Meta adapter: one webhook for Messenger, Instagram and WhatsApp (verified, staged as it
came, answered 200 once the broker has it, read in the processors); replies through the Graph
API."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    ParseError,
    PublishError,
    Route,
    SendResult,
    StagingAdapter,
    WebhookAdapter,
    WebhookReply,
    blob_id,
    stage,
)
from channels.base.media import Media, MediaAdapter, MediaRefused, MediaUnavailable
from channels.meta.config import MetaSettings
from channels.meta.media import MetaMedia
from channels.meta.parse import Fetch, Parsed, parse_body
from channels.meta.send import GraphSender, TokenState
from channels.meta.verify import check_signature, check_subscription
from schemas import Attachment, Channel, Interaction, OutboundCommand, StagedInput
from schemas.events import utcnow

log = logging.getLogger(__name__)

STAGE = "channels/meta"
#: The first id in a body (the first entry's page or account): one account's webhooks stay in
#: order on the staged topic without parsing the body while Meta waits.
_FIRST_ID = re.compile(rb'"id"\s*:\s*"([0-9]{1,40})"')


class MetaAdapter(WebhookAdapter, StagingAdapter, MediaAdapter):
    """Messenger, Instagram and WhatsApp through one Meta app's webhook."""

    name: ClassVar[str] = "meta"
    channels: ClassVar[frozenset[Channel]] = frozenset(
        {Channel.MESSENGER, Channel.INSTAGRAM, Channel.WHATSAPP}
    )
    routes: ClassVar[tuple[Route, ...]] = (
        Route(
            "webhook",
            methods=("GET",),
            publishes=False,
            summary="Meta's subscription check: echoes hub.challenge for our verify token",
            media_type="text/plain; charset=utf-8",
        ),
        Route(
            "webhook",
            summary="Messenger, Instagram and WhatsApp events, signed with the app secret",
        ),
    )

    def __init__(self, settings: MetaSettings | None = None) -> None:
        self.settings = settings or MetaSettings()
        self.max_body_bytes = self.settings.max_body_bytes
        self.tokens = TokenState()
        self.graph = GraphSender(self.settings, lambda blob: self.blobs.get(blob), self.tokens)
        self.media = MetaMedia(self.settings, self.graph)
        #: Echoes of the hub's own replies dropped, read staged inputs by outcome (logs, tests).
        self.echoes = 0
        self._probe: tuple[float, str | None] | None = None

    # --- inbound ------------------------------------------------------------------------

    def verify(self, request: InboundRequest, route: Route) -> None:
        """GET: the verify token; POST: X-Hub-Signature-256 over the raw body."""
        if request.method.upper() == "GET":
            token = self.settings.verify_token
            check_subscription(request, token.get_secret_value() if token else None)
        else:
            check_signature(request, self.settings.secret())

    def respond(self, request: InboundRequest, route: Route) -> WebhookReply:
        """The subscription check's answer: the challenge, as text."""
        challenge = check_subscription(
            request,
            self.settings.verify_token.get_secret_value() if self.settings.verify_token else None,
        )
        return WebhookReply(200, challenge.encode(), "text/plain; charset=utf-8")

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """The body's events (pure; ``unstage`` does the same later, with the media)."""
        parsed = parse_body(request.body, utcnow(), self.settings.app_id)
        if not parsed.events and parsed.unusable:
            raise ParseError("; ".join(u.reason for u in parsed.unusable)[:2000])
        return parsed.events

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Stage the body as it came: Meta gets its 200 once the broker has it, and the
        processors read it (``unstage``). Nothing is published here."""
        first = _FIRST_ID.search(request.body[:400])
        staged = StagedInput(
            adapter=self.name,
            via="webhook",
            order_key=f"meta:{first.group(1).decode() if first else ''}",
            payload=request.body,
        )
        try:
            await stage(self.publisher, self.blobs, staged)
        except OSError as exc:
            raise PublishError(f"the blob store did not take the webhook: {exc}") from exc
        return []

    async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
        """Every event of the staged webhooks, files fetched and stored; what can be no event
        dead-lettered with its reason. Idempotent: ids come from Meta's."""
        events: list[ChannelEvent] = []
        for staged in inputs:
            try:
                parsed = parse_body(staged.payload, staged.received_at, self.settings.app_id)
            except ParseError as exc:
                await self._dead_letter(staged.payload, str(exc))
                continue
            except Exception as exc:  # a body no test foresaw: dead-lettered, never raised
                log.exception("meta: could not read a staged webhook")
                await self._dead_letter(staged.payload, f"unexpected {type(exc).__name__}: {exc}")
                continue
            self.echoes += parsed.echoes
            for unusable in parsed.unusable:
                body = json.dumps(unusable.item, ensure_ascii=False).encode()
                await self._dead_letter(body, unusable.reason)
            events += await self._with_media(parsed)
        return events

    async def _with_media(self, parsed: Parsed) -> list[ChannelEvent]:
        """The events with their files in the blob store (a file Meta would not give: the
        attachment kept without it, the reason on the event)."""
        if not parsed.fetches:
            return parsed.events
        results = await asyncio.gather(*(self._fetch(f) for f in parsed.fetches))
        found: dict[Any, list[tuple[Fetch, Any]]] = {}
        for fetch, result in zip(parsed.fetches, results, strict=True):
            found.setdefault(fetch.event_id, []).append((fetch, result))
        events: list[ChannelEvent] = []
        for event in parsed.events:
            if not isinstance(event, Interaction) or event.event_id not in found:
                events.append(event)
                continue
            attachments = list(event.attachments)
            attributes = dict(event.attributes)
            for fetch, result in found[event.event_id]:
                if isinstance(result, str):
                    attributes["media_unavailable"] = result[:500]
                    continue
                blob, size, content_type = result
                attachments[fetch.index] = attachments[fetch.index].model_copy(
                    update={"blob": blob, "size": size, "content_type": content_type}
                )
            events.append(
                event.model_copy(update={"attachments": attachments, "attributes": attributes})
            )
        return events

    async def _fetch(self, fetch: Fetch) -> tuple[str, int, str] | str:
        """The stored blob of one file, or why it could not be had (OSError from the blob
        store: the processors retry the batch)."""
        try:
            if fetch.media_id is not None:
                media = await self.media.whatsapp(fetch.media_id)
            else:
                media = await self.media.cdn(fetch.url)
        except (MediaRefused, MediaUnavailable) as exc:
            log.warning("meta: media not fetched: %s", exc)
            return f"the file could not be fetched from Meta: {exc}"
        blob = blob_id(fetch.event_id, fetch.index)
        await self.blobs.put(blob, media.data)
        return blob, len(media.data), media.content_type

    async def refetch(self, attachment: Attachment, interaction: Interaction) -> Media:
        """A WhatsApp file again by its media id (``GET /{media-id}``, then the download);
        a Messenger or Instagram file from the CDN address the message named, which Meta lets
        expire: then the reason says so."""
        if interaction.channel is Channel.WHATSAPP:
            if not attachment.provider_id:
                raise MediaRefused("the attachment names no WhatsApp media id")
            return await self.media.whatsapp(attachment.provider_id)
        if not attachment.url:
            raise MediaRefused("the message was stored without the file's address at Meta")
        try:
            return await self.media.cdn(attachment.url)
        except MediaUnavailable as exc:
            raise MediaUnavailable(
                f"Meta no longer gives the file at the address the message named (its"
                f" addresses expire): {exc}"
            ) from exc

    async def _dead_letter(self, body: bytes, reason: str) -> None:
        log.warning("meta: dead-lettered a webhook item: %s", reason)
        request = InboundRequest(
            method="POST",
            url="/channels/meta/webhook",
            headers={"content-type": "application/json"},
            body=body,
        )
        await self.publisher.dead_letter(request, reason, stage=STAGE)

    # --- outbound -----------------------------------------------------------------------

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send through the Graph API, within Meta's messaging windows."""
        return await self.graph.send(command)

    async def health(self) -> Health:
        """Unhealthy without the app's settings, or once Meta said a token is expired or
        revoked (error 190, on a send or on the periodic ``GET /me`` check)."""
        missing = self.settings.missing()
        if missing:
            return Health(ok=False, detail=f"not set: {', '.join(missing)}")
        if self.tokens.invalid:
            return Health(ok=False, detail=self.tokens.invalid)
        probed = await self._probed()
        if probed:
            return Health(ok=False, detail=probed)
        return Health(ok=True, detail="webhook verified with the app secret")

    async def _probed(self) -> str | None:
        every = self.settings.health_probe_seconds
        if every <= 0:
            return None
        now = time.monotonic()
        if self._probe is None or now - self._probe[0] >= every:
            self._probe = (now, await self.graph.check_token())
        return self._probe[1]

    async def close(self) -> None:
        """Close the Graph API and media clients."""
        await self.graph.close()
        await self.media.close()

"""The X adapter: the Account Activity API's webhook in (CRC answered, signature checked,
payload staged and read in the processors), direct messages out through X API v2."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    ParseError,
    PayloadTooLarge,
    PublishError,
    Route,
    SendError,
    SendResult,
    SignatureError,
    StagingAdapter,
    WebhookAdapter,
    WebhookReply,
    blob_id,
    stage,
)
from channels.base.media import Media, MediaAdapter, MediaFetcher, MediaRefused, MediaUnavailable
from channels.x.config import XSettings
from channels.x.oauth import authorization
from channels.x.parse import Fetch, Parsed, order_key, parse_payload, read_payload
from channels.x.send import TokenState, XSender
from channels.x.verify import SIGNATURE_HEADER, check_signature, crc_response
from schemas import Attachment, Channel, Interaction, OutboundCommand, StagedInput
from schemas.events import utcnow

log = logging.getLogger(__name__)

#: An Account Activity payload carries a few events and the users they name.
MAX_BODY = 1024 * 1024
#: The dead-letter stage of what the X channel could not use.
STAGE = "channels/x"
OFF = "X direct messages are switched off (X_ENABLED=false; they need X's enterprise tier)"


class XAdapter(WebhookAdapter, StagingAdapter, MediaAdapter):
    """One X account's direct messages: X's CRC challenge answered, each webhook's signature
    checked and its payload staged at once (X wants a fast 200), read by the processors;
    replies sent as DMs with the account's user-context credentials."""

    name: ClassVar[str] = "x"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.X})
    routes: ClassVar[tuple[Route, ...]] = (
        Route(
            "webhook",
            methods=("GET",),
            publishes=False,
            summary="X's CRC challenge (crc_token): answered with the HMAC response_token",
            media_type="application/json",
        ),
        Route(
            "webhook",
            summary="Account Activity API events (x-twitter-webhooks-signature)",
            max_body_bytes=MAX_BODY,
        ),
    )

    def __init__(self, settings: XSettings | None = None) -> None:
        self.settings = settings or XSettings()
        self.tokens = TokenState()
        self.sender = XSender(self.settings, lambda blob: self.blobs.get(blob), self.tokens)
        self.media = MediaFetcher(
            hosts=self.settings.hosts,
            max_bytes=self.settings.max_media_bytes,
            schemes=self.settings.schemes,
            backoff=self.settings.send_backoff,
        )
        #: Staged payloads' events and what was not published, by outcome.
        self.unstaged: Counter[str] = Counter()

    # --- inbound ---------------------------------------------------------------------------

    def verify(self, request: InboundRequest, route: Route) -> None:
        """The CRC GET names a token to sign and is answered by ``respond``; a POST carries
        ``x-twitter-webhooks-signature``, checked in constant time. Nothing while X is off."""
        if not self.settings.enabled:
            raise SignatureError(OFF)
        if request.method == "GET":
            if not request.query.get("crc_token"):
                raise SignatureError("a GET without crc_token")
            if not self.settings.secret():
                raise SignatureError("X_CONSUMER_SECRET is not set: the CRC cannot be answered")
            return
        check_signature(self.settings.secret(), request.body, request.header(SIGNATURE_HEADER))
        if len(request.body) > self.body_limit(route):
            raise PayloadTooLarge(f"body larger than {self.body_limit(route)} bytes")

    def respond(self, request: InboundRequest, route: Route) -> WebhookReply:
        """X's CRC: ``{"response_token": "sha256=<base64 HMAC of crc_token>"}``."""
        secret = self.settings.secret() or ""
        body = json.dumps(crc_response(secret, request.query["crc_token"])).encode()
        return WebhookReply(200, body, "application/json")

    def _parse(self, body: bytes, received_at: datetime | None = None) -> Parsed:
        return parse_payload(
            body,
            received_at=received_at or utcnow(),
            account=self.settings.user_id,
            app_id=self.settings.app_id,
        )

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """The payload's events, media not fetched (pure; the webhook stages instead);
        ParseError when it makes no event and something in it could be none."""
        parsed = self._parse(request.body)
        if not parsed.events and parsed.unusable:
            raise ParseError("; ".join(parsed.unusable))
        return parsed.events

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Stage the payload as it came and publish nothing now: the processors read it
        (``unstage``). What is not X's at all is a ParseError, dead-lettered at once;
        PublishError (503: X retries) when the broker or the store did not take it."""
        raw = read_payload(request.body)
        staged = StagedInput(
            adapter=self.name, via="webhook", order_key=order_key(raw), payload=request.body
        )
        try:
            await stage(self.publisher, self.blobs, staged)
        except OSError as exc:
            raise PublishError(f"the blob store did not take the payload: {exc}") from exc
        return []

    async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
        """The staged payloads' events, DM media fetched into the blob store; what can be no
        event dead-lettered with its reason, what X sends that the hub ignores counted."""
        events: list[ChannelEvent] = []
        for staged in inputs:
            try:
                parsed = self._parse(staged.payload, staged.received_at)
            except Exception as exc:  # ParseError, or a payload no test foresaw
                await self._dead_letter(staged, str(exc), "unusable")
                continue
            if parsed.unusable:
                await self._dead_letter(staged, "; ".join(parsed.unusable), "unusable")
            for reason, count in parsed.ignored.items():
                log.debug("x: %d %s event(s) ignored", count, reason)
                self.unstaged[f"ignored:{reason}"] += count
            events += await self._with_files(parsed)
            self.unstaged["published"] += len(parsed.events)
        return events

    async def _dead_letter(self, staged: StagedInput, reason: str, outcome: str) -> None:
        log.info("x: payload not (wholly) published (%s): %s", outcome, reason)
        self.unstaged[outcome] += 1
        request = InboundRequest(
            method="POST",
            url=f"x:{staged.via}",
            headers={"Content-Type": "application/json"},
            body=staged.payload,
        )
        await self.publisher.dead_letter(request, reason[:2000], stage=STAGE)

    async def _with_files(self, parsed: Parsed) -> list[ChannelEvent]:
        """The events, each DM's media in the blob store; a file that could not be had stays
        metadata and the attributes say so (the message is kept either way). OSError (the
        store failed) makes the processors read the batch again."""
        fetches: dict[object, list[Fetch]] = {}
        for fetch in parsed.fetches:
            fetches.setdefault(fetch.event_id, []).append(fetch)
        events: list[ChannelEvent] = []
        for event in parsed.events:
            wanted = fetches.get(getattr(event, "event_id", None), [])
            if isinstance(event, Interaction) and wanted:
                event = await self._fetch_into(event, wanted)
            events.append(event)
        return events

    async def _fetch_into(self, interaction: Interaction, wanted: list[Fetch]) -> Interaction:
        attachments = list(interaction.attachments)
        failed: list[str] = []
        for fetch in wanted:
            try:
                media = await self.media.fetch(fetch.url, self._media_headers(fetch.url))
            except (MediaRefused, MediaUnavailable, SendError) as exc:
                failed.append(f"attachment {fetch.index + 1}: {exc}")
                continue
            blob = blob_id(interaction.event_id, fetch.index)
            await self.blobs.put(blob, media.data)
            found = attachments[fetch.index]
            attachments[fetch.index] = found.model_copy(
                update={"blob": blob, "size": len(media.data), "content_type": media.content_type}
            )
        attributes = dict(interaction.attributes)
        if failed:
            log.warning("x: media not fetched: %s", "; ".join(failed))
            attributes["media_unavailable"] = len(failed)
            attributes["media_error"] = "; ".join(failed)[:1000]
        return interaction.model_copy(update={"attachments": attachments, "attributes": attributes})

    async def refetch(self, attachment: Attachment, interaction: Interaction) -> Media:
        """The DM's file again from the media address the attachment keeps, with the
        account's authorization."""
        if not attachment.url:
            raise MediaRefused("the attachment names no media address")
        try:
            return await self.media.fetch(attachment.url, self._media_headers(attachment.url))
        except SendError as exc:  # no credentials to fetch with
            raise MediaUnavailable(str(exc)) from exc

    def _media_headers(self, url: str) -> dict[str, str]:
        """User-context authorization: ton.twitter.com serves DM media only to the account."""
        bearer = self.settings.bearer()
        if bearer:
            return {"authorization": f"Bearer {bearer}"}
        credentials = self.settings.oauth1()
        if credentials is None:
            raise SendError("no X credentials to fetch DM media with", code="config")
        return {"authorization": authorization("GET", url, credentials)}

    # --- outbound --------------------------------------------------------------------------

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send as a DM (X API v2); refused with the reason while X is switched off."""
        if not self.settings.enabled:
            raise SendError(OFF, code="channel_off")
        return await self.sender.send(command)

    async def health(self) -> Health:
        """Off: healthy, saying so. On: the settings are set and X took the credentials the
        last time it was asked (a send, or ``GET /2/users/me`` every
        ``X_HEALTH_CHECK_SECONDS``)."""
        if not self.settings.enabled:
            return Health(ok=True, detail="switched off (X_ENABLED=false)")
        missing = self.settings.missing()
        if missing:
            return Health(ok=False, detail=f"not set: {', '.join(missing)}")
        every = self.settings.health_check_seconds
        now = time.monotonic()
        if every > 0 and (not self.tokens.checked_at or now - self.tokens.checked_at >= every):
            self.tokens.checked_at = now
            await self.sender.check()
        if self.tokens.refused:
            return Health(ok=False, detail=f"credentials refused: {self.tokens.refused}")
        return Health(ok=True, detail=f"account {self.settings.user_id or 'not named'}")

    async def close(self) -> None:
        """Close the API and media clients."""
        await self.sender.close()
        await self.media.close()

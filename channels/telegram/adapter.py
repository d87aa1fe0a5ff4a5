"""The Telegram adapter: the bot's webhook in (staged, read in the processors), the Bot API
out."""

from __future__ import annotations

import hmac
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    PayloadTooLarge,
    PublishError,
    Route,
    SendError,
    SendResult,
    SignatureError,
    StagingAdapter,
    WebhookAdapter,
    blob_id,
    stage,
)
from channels.base.media import Media, MediaAdapter, MediaFetcher, MediaRefused, MediaUnavailable
from channels.telegram.api import ApiError, BotApi
from channels.telegram.config import TelegramSettings
from channels.telegram.parse import FileRef, Ignored, Parsed, parse_update, read_update
from channels.telegram.parse import order_key as order_of
from channels.telegram.send import TelegramSender
from schemas import (
    Attachment,
    Channel,
    DeliveryState,
    DeliveryStatus,
    Interaction,
    OutboundCommand,
    StagedInput,
)
from schemas.events import utcnow

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 - a header name
#: Updates are small (a message's text is 4,096 characters at most): one fits in a record.
MAX_BODY = 256 * 1024
#: The dead-letter stage of what the Telegram channel could not use.
STAGE = "channels/telegram"


class TelegramAdapter(WebhookAdapter, StagingAdapter, MediaAdapter):
    """One Telegram bot: updates by webhook, checked with the secret token given to
    setWebhook, staged at once and read by the processors; replies through the Bot API."""

    name: ClassVar[str] = "telegram"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.TELEGRAM})
    routes: ClassVar[tuple[Route, ...]] = (
        Route(
            "webhook",
            summary="The bot's updates (setWebhook with secret_token)",
            max_body_bytes=MAX_BODY,
        ),
    )

    def __init__(self, settings: TelegramSettings | None = None) -> None:
        self.settings = settings or TelegramSettings()
        self.api = BotApi(self.settings)
        self.sender = TelegramSender(
            self.settings, self.api, lambda blob: self.blobs.get(blob), self._mark_unreachable
        )
        self.media = MediaFetcher(
            hosts=(self.settings.api_host,),
            max_bytes=self.settings.max_media_bytes,
            schemes=("https", "http")
            if self.settings.api_base_url.startswith("http:")
            else ("https",),
            backoff=self.settings.send_backoff,
        )
        #: Staged updates read, by outcome (``published``, or the dead letter's reason kind).
        self.unstaged: Counter[str] = Counter()

    # --- inbound ---------------------------------------------------------------------------

    def verify(self, request: InboundRequest, route: Route) -> None:
        """The secret token Telegram sends with every update, compared in constant time."""
        secret = self.settings.secret()
        if not secret:
            raise SignatureError("TELEGRAM_WEBHOOK_SECRET is not set: no update can be trusted")
        given = request.header(SECRET_HEADER)
        if not given:
            raise SignatureError(f"missing {SECRET_HEADER}")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            raise SignatureError(f"wrong {SECRET_HEADER}")
        if len(request.body) > self.body_limit(route):
            raise PayloadTooLarge(f"body larger than {self.body_limit(route)} bytes")

    def _parse(self, body: bytes, received_at: datetime | None = None) -> Parsed:
        return parse_update(
            body,
            bot=self.settings.bot_id,
            groups=self.settings.groups,
            received_at=received_at or utcnow(),
            source=f"channels/{self.name}",
        )

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """The update's interaction, files not fetched (pure; the webhook stages instead)."""
        return [self._parse(request.body).interaction]

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Stage the update as it came and publish nothing now: the processors read it
        (``unstage``). What is not even an update (not JSON, no update_id) is a ParseError,
        dead-lettered at once; PublishError (503, Telegram retries) when the broker or the
        store did not take it."""
        raw, _ = read_update(request.body)
        staged = StagedInput(
            adapter=self.name, via="webhook", order_key=order_of(raw), payload=request.body
        )
        try:
            await stage(self.publisher, self.blobs, staged)
        except OSError as exc:
            raise PublishError(f"the blob store did not take the update: {exc}") from exc
        return []

    async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
        """The staged updates' interactions, their media fetched into the blob store; what can
        be no event dead-lettered with its reason (ignored group messages included)."""
        events: list[ChannelEvent] = []
        for staged in inputs:
            try:
                parsed = self._parse(staged.payload, staged.received_at)
            except Ignored as exc:
                await self._dead_letter(staged, str(exc), "ignored")
                continue
            except Exception as exc:  # ParseError, or a payload no test foresaw
                await self._dead_letter(staged, str(exc), "unusable")
                continue
            events.append(await self._with_files(parsed))
            self.unstaged["published"] += 1
            await self._answer_callback(parsed.interaction)
        return events

    async def _dead_letter(self, staged: StagedInput, reason: str, outcome: str) -> None:
        log.info("telegram: update not published (%s): %s", outcome, reason)
        self.unstaged[outcome] += 1
        request = InboundRequest(
            method="POST",
            url=f"telegram:{staged.via}",
            headers={"Content-Type": "application/json"},
            body=staged.payload,
        )
        await self.publisher.dead_letter(request, reason, stage=STAGE)

    async def _with_files(self, parsed: Parsed) -> Interaction:
        """The interaction with its files in the blob store; a file that could not be had is
        left without a blob, and the attributes say so (the message is kept either way).
        OSError (the store failed) makes the processors read the batch again."""
        interaction = parsed.interaction
        attachments = list(interaction.attachments)
        failed: list[str] = []
        for index, data in parsed.inline.items():
            blob = blob_id(interaction.event_id, index)
            await self.blobs.put(blob, data)
            attachments[index] = attachments[index].model_copy(
                update={"blob": blob, "size": len(data)}
            )
        for ref in parsed.files:
            try:
                data, kind = await self._download(ref)
            except (MediaRefused, MediaUnavailable, ApiError) as exc:
                failed.append(f"attachment {ref.index + 1}: {exc}")
                continue
            blob = blob_id(interaction.event_id, ref.index)
            await self.blobs.put(blob, data)
            found = attachments[ref.index]
            attachments[ref.index] = found.model_copy(
                update={
                    "blob": blob,
                    "size": len(data),
                    "content_type": found.content_type or kind,
                }
            )
        attributes = dict(interaction.attributes)
        if failed:
            log.warning("telegram: media not fetched: %s", "; ".join(failed))
            attributes["media_unavailable"] = len(failed)
            attributes["media_error"] = "; ".join(failed)[:1000]
        return interaction.model_copy(update={"attachments": attachments, "attributes": attributes})

    async def _download(self, ref: FileRef) -> tuple[bytes, str]:
        """getFile, then the file from the Bot API's own host, within the size limit."""
        limit = self.settings.max_media_bytes
        if ref.size is not None and ref.size > limit:
            raise MediaRefused(f"larger than {limit} bytes (TELEGRAM_MAX_MEDIA_BYTES)")
        found = await self.api.call("getFile", {"file_id": ref.file_id})
        path = found.get("file_path") if isinstance(found, dict) else None
        if not isinstance(path, str):
            raise MediaUnavailable("getFile named no file_path")
        media = await self.media.fetch(self.api.file_url(path))
        return media.data, media.content_type

    async def refetch(self, attachment: Attachment, interaction: Interaction) -> Media:
        """The file again by the ``file_id`` the attachment keeps (getFile, then the
        download), of the type the message declared, else the one served."""
        if not attachment.provider_id:
            raise MediaRefused("the attachment names no Telegram file")
        try:
            data, kind = await self._download(FileRef(0, attachment.provider_id, attachment.size))
        except ApiError as exc:
            raise MediaUnavailable(f"Telegram did not give the file: {exc}") from exc
        return Media(data, attachment.content_type or kind)

    async def _answer_callback(self, interaction: Interaction) -> None:
        """Stop the button's spinner in the customer's app (best effort: a query is answered
        once, and only for a while, so a failure here changes nothing)."""
        query = interaction.provider_ids.get("callback_query_id")
        if not query:
            return
        try:
            await self.api.call_once("answerCallbackQuery", {"callback_query_id": query})
        except ApiError as exc:
            log.info("telegram: answerCallbackQuery: %s", exc)

    # --- outbound --------------------------------------------------------------------------

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send through the Bot API (sendMessage, sendPhoto, sendDocument)."""
        return await self.sender.send(command)

    async def _mark_unreachable(self, command: OutboundCommand, error: SendError) -> None:
        """The customer blocked the bot (or is gone): the failed state of this message names
        their identity as undeliverable, which the processors mark on their profile."""
        state = DeliveryStatus(
            command_id=command.command_id,
            channel=command.channel,
            state=DeliveryState.FAILED,
            occurred_at=utcnow(),
            error_code=error.code,
            error_message=str(error)[:2000],
            undeliverable=command.to,
        )
        try:
            await self.publisher.publish([state])
        except (PublishError, RuntimeError) as exc:  # no publisher, or the broker did not ack
            log.warning("telegram: command %s: recipient not marked: %s", command.command_id, exc)

    async def health(self) -> Health:
        """Healthy when the token and the webhook secret are set (no network call)."""
        missing = self.settings.missing()
        if missing:
            return Health(ok=False, detail=f"not set: {', '.join(missing)}")
        return Health(ok=True, detail=f"bot {self.settings.bot_id}, groups: {self.settings.groups}")

    async def close(self) -> None:
        """Close the Bot API and media clients."""
        await self.api.close()
        await self.media.close()

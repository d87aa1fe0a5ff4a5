"""Send the hub's replies through the Bot API: the text with ``sendMessage``, then each file
from the blob store with ``sendPhoto`` (JPEG, PNG, WebP up to 10 MB) or ``sendDocument``.

Telegram's refusals become clear delivery states: a customer who blocked the bot (403
"bot was blocked by the user") or deleted their account fails at once, is never retried and
their Telegram identity is marked undeliverable; other 4xx fail with Telegram's description;
429 is waited out as ``retry_after`` says and 5xx or a connection never made is retried with
back-off (``BotApi.call``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels.base import SendError, SendResult
from channels.telegram.api import ApiError, BotApi
from channels.telegram.config import TelegramSettings
from channels.telegram.parse import message_id
from schemas import Attachment, Channel, IdentityType, OutboundCommand

log = logging.getLogger(__name__)

#: The longest text one message takes (after entities parsing; plain text here).
MAX_MESSAGE = 4096
#: What sendPhoto takes: photos up to 10 MB in these formats; anything else is a document.
PHOTO_TYPES = frozenset({"image/jpeg", "image/png", "image/webp"})
MAX_PHOTO = 10 * 1024 * 1024
#: Error codes of a customer who cannot be reached by the bot at all (marked undeliverable).
UNREACHABLE = frozenset({"blocked", "deactivated"})


def split_text(text: str, size: int = MAX_MESSAGE) -> list[str]:
    """``text`` in parts Telegram takes, cut at a line break or a space when there is one."""
    parts: list[str] = []
    while len(text) > size:
        cut = max(text.rfind("\n", 0, size), text.rfind(" ", 0, size))
        cut = cut if cut > size // 2 else size
        parts.append(text[:cut])
        text = text[cut:].lstrip("\n ") if cut < size else text[cut:]
    if text:
        parts.append(text)
    return parts


def send_error(exc: ApiError, method: str) -> SendError:
    """Telegram's refusal as a delivery failure with a readable reason and a stable code."""
    said = exc.description
    lowered = said.lower()
    if exc.error_code == 403 and "blocked by the user" in lowered:
        return SendError(f"The customer blocked the bot on Telegram ({said})", code="blocked")
    if exc.error_code == 403 and "deactivated" in lowered:
        return SendError(f"The customer's Telegram account is deleted ({said})", code="deactivated")
    if exc.error_code == 429:
        wait = f"; retry after {exc.retry_after:g} s" if exc.retry_after is not None else ""
        return SendError(
            f"Telegram is rate limiting the bot ({said}){wait}", code="rate_limited", retryable=True
        )
    if exc.error_code == 401:
        return SendError(
            f"Telegram refused the bot token: check TELEGRAM_BOT_TOKEN ({said})",
            code="unauthorized",
        )
    if exc.error_code >= 500:
        return SendError(
            f"Telegram failed on {method}: {said}", code="server_error", retryable=True
        )
    if exc.error_code == 0:
        code = "timeout" if exc.uncertain else "network"
        suffix = "; the message may or may not have been sent" if exc.uncertain else ""
        return SendError(f"{said}{suffix}", code=code, retryable=True)
    names = {400: "bad_request", 403: "forbidden", 404: "not_found"}
    return SendError(
        f"Telegram refused {method}: {said}", code=names.get(exc.error_code, str(exc.error_code))
    )


class TelegramSender:
    """Sends commands for one bot; ``unreachable`` is told of customers who cannot receive."""

    def __init__(
        self,
        settings: TelegramSettings,
        api: BotApi,
        blob: Callable[[str], Awaitable[bytes]],
        unreachable: Callable[[OutboundCommand, SendError], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.api = api
        self._blob = blob
        self._unreachable = unreachable

    def _chat(self, command: OutboundCommand) -> int:
        if command.channel is not Channel.TELEGRAM:
            raise SendError(
                f"the Telegram adapter sends on telegram, not {command.channel.value}",
                code="unsupported_channel",
            )
        missing = [m for m in self.settings.missing() if m != "TELEGRAM_WEBHOOK_SECRET"]
        if missing:
            raise SendError(f"Telegram is not configured: {', '.join(missing)}", code="config")
        to = command.to
        if to.type is not IdentityType.TELEGRAM or not to.value.lstrip("-").isdigit():
            raise SendError(
                f"a Telegram message needs a Telegram user id, not {to.type.value}",
                code="no_telegram_id",
            )
        if to.scope != self.settings.bot_id:
            raise SendError(
                f"the customer wrote to another bot ({to.scope}); this one is "
                f"{self.settings.bot_id} and cannot write to them",
                code="other_bot",
            )
        return int(to.value)

    async def _call(
        self,
        command: OutboundCommand,
        method: str,
        data: dict[str, Any],
        files: dict[str, tuple[str, bytes, str]] | None = None,
    ) -> dict[str, Any]:
        try:
            result = await self.api.call(method, data, files)
        except ApiError as exc:
            error = send_error(exc, method)
            if error.code in UNREACHABLE:
                await self._unreachable(command, error)
            raise error from None
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise SendError(f"Telegram answered {method} without a message", code="protocol")
        return result

    async def _file(self, command: OutboundCommand, chat: int, attachment: Attachment) -> None:
        if attachment.blob is None:
            raise SendError(
                f"the attachment {attachment.name or ''!r} has no file in the hub", code="no_file"
            )
        try:
            data = await self._blob(attachment.blob)
        except (LookupError, OSError) as exc:  # BlobMissing is a LookupError
            raise SendError(
                f"the file {attachment.name or ''!r} cannot be read: {exc!r}", code="no_file"
            ) from None
        kind = (attachment.content_type or "application/octet-stream").lower()
        photo = kind in PHOTO_TYPES and len(data) <= MAX_PHOTO
        field = "photo" if photo else "document"
        name = attachment.name or ("photo.jpg" if photo else "file")
        await self._call(
            command,
            "sendPhoto" if photo else "sendDocument",
            {"chat_id": chat},
            {field: (name, data, kind)},
        )

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send the text, then the files; the first message's id is the provider id."""
        chat = self._chat(command)
        first: int | None = None
        for part in split_text(command.text):
            sent = await self._call(command, "sendMessage", {"chat_id": chat, "text": part})
            first = sent["message_id"] if first is None else first
        for attachment in command.attachments:
            try:
                await self._file(command, chat, attachment)
            except SendError as exc:
                raise SendError(
                    f"the text was sent, a file was not: {exc}",
                    code=exc.code,
                    retryable=False,
                ) from None
        assert first is not None  # an OutboundCommand's text is never empty
        return SendResult(provider_message_id=message_id(str(self.settings.bot_id), chat, first))

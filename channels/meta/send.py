"""Replies through the Graph API: ``POST /{page-id}/messages`` (Messenger, Instagram) and
``POST /{phone-number-id}/messages`` (WhatsApp: text, media, templates), files uploaded first
(``/message_attachments``, ``/media``), with the page's or WhatsApp's token.

The messaging window is checked before anything is sent (``window.permit``). Throttling (HTTP
429, Meta's codes 4, 17, 32, 613, 80007, 130429, 131056) and connections that never reached
Meta are retried with exponential back-off and jitter; a timeout is not (Meta may have sent the
message). Error 190 (token expired or revoked) marks the token bad for ``health``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from channels.base import SendError, SendResult
from channels.base.http import ReusedClient
from channels.meta.config import MetaSettings
from channels.meta.parse import OURS
from channels.meta.window import permit
from schemas import Attachment, Channel, IdentityType, OutboundCommand
from schemas.events import utcnow

log = logging.getLogger(__name__)

#: Meta's codes for "too many calls": retried after a pause.
THROTTLED = frozenset({4, 17, 32, 613, 80007, 130429, 131056})
#: An expired, revoked or otherwise invalid access token.
TOKEN_INVALID = 190
#: Longest text of one message (longer replies go as several, in order).
TEXT_LIMIT = {Channel.MESSENGER: 2000, Channel.INSTAGRAM: 1000, Channel.WHATSAPP: 4096}
#: Attachment types of the Send API by MIME family.
_FAMILIES = {"image": "image", "audio": "audio", "video": "video"}


class GraphError(Exception):
    """Meta's error body: ``{"error": {"message", "type", "code", "error_subcode", ...}}``."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        self.status = status
        self.code = int(error.get("code") or 0)
        self.subcode = int(error.get("error_subcode") or 0)
        self.type = str(error.get("type") or "")
        self.trace = str(error.get("fbtrace_id") or "")
        self.text = str(error.get("error_user_msg") or error.get("message") or f"HTTP {status}")
        super().__init__(self.text)

    @property
    def throttled(self) -> bool:
        """Meta asks us to slow down."""
        return self.status == 429 or self.code in THROTTLED

    def describe(self) -> str:
        """Meta's own words, with its code and trace id (for Meta's support)."""
        sub = f"/{self.subcode}" if self.subcode else ""
        return f"Meta error {self.code}{sub}: {self.text[:500]} (fbtrace_id {self.trace})"


class _Again(Exception):
    """An attempt Meta provably did not act on."""

    def __init__(self, error: SendError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class TokenState:
    """What the adapter last learnt about its tokens (error 190 makes it unhealthy)."""

    invalid: str | None = None


class GraphSender:
    """Sends one adapter's replies (one HTTP client, reused)."""

    def __init__(
        self,
        settings: MetaSettings,
        blob: Callable[[str], Awaitable[bytes]],
        tokens: TokenState,
    ) -> None:
        self.settings = settings
        self._blob = blob
        self.tokens = tokens
        self._http = ReusedClient(settings.send_timeout)

    async def close(self) -> None:
        """Close the client."""
        await self._http.close()

    # --- one call -----------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        body: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One Graph API call with retries of what Meta did not act on; SendError when Meta
        refuses (or error 190: the token is recorded invalid)."""
        delay = self.settings.send_backoff
        for attempt in range(1, self.settings.send_attempts + 1):
            try:
                return await self._once(method, path, token, body, files, data)
            except _Again as again:
                if attempt == self.settings.send_attempts:
                    raise again.error from None
                await asyncio.sleep(min(delay, 30.0) * (0.5 + random.random()))  # noqa: S311
                delay *= 2
        raise AssertionError("unreachable")

    async def _once(
        self,
        method: str,
        path: str,
        token: str,
        body: dict[str, Any] | None,
        files: dict[str, Any] | None,
        data: dict[str, str] | None,
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            answer = await self._http().request(
                method,
                self.settings.graph(path),
                headers=headers,
                json=body,
                files=files,
                data=data,
            )
        except httpx.ConnectError as exc:  # never reached Meta
            raise _Again(SendError(f"Meta unreachable: {exc}", code="network")) from exc
        except httpx.TimeoutException:
            raise SendError(
                f"Meta did not answer within {self.settings.send_timeout} s; the message may "
                "or may not have been sent",
                code="timeout",
                retryable=True,
            ) from None
        except httpx.HTTPError as exc:
            raise SendError(f"Meta request failed: {exc!r}", code="network") from exc
        try:
            found = answer.json()
        except ValueError:
            found = {}
        if answer.status_code < 400 and isinstance(found, dict) and "error" not in found:
            self.tokens.invalid = None  # a token Meta takes again (renewed)
            return found
        error = found.get("error") if isinstance(found, dict) else None
        graph = GraphError(answer.status_code, error if isinstance(error, dict) else {})
        if graph.code == TOKEN_INVALID:
            self.tokens.invalid = graph.describe()
            log.error("meta: the access token is no longer valid: %s", graph.describe())
            raise SendError(
                f"{graph.describe()}: the access token expired or was revoked; nothing was "
                "sent (renew the token, then send again)",
                code=str(TOKEN_INVALID),
                retryable=True,
            )
        error_out = SendError(graph.describe(), code=str(graph.code or answer.status_code))
        if graph.throttled:
            error_out.retryable = True
            raise _Again(error_out)
        if answer.status_code >= 500:
            error_out.retryable = True
        raise error_out

    # --- commands -------------------------------------------------------------------------

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send ``command`` on its channel; SendRefused outside the window, SendError when
        Meta refuses."""
        if command.channel is Channel.WHATSAPP:
            return await self._whatsapp(command)
        if command.channel in (Channel.MESSENGER, Channel.INSTAGRAM):
            return await self._page(command)
        raise SendError(f"Meta does not send {command.channel.value}", code="unsupported_channel")

    async def _page(self, command: OutboundCommand) -> SendResult:
        wanted = (
            IdentityType.FACEBOOK
            if command.channel is Channel.MESSENGER
            else IdentityType.INSTAGRAM
        )
        if command.to.type is not wanted or not command.to.scope:
            raise SendError(
                f"{command.channel.value} needs a {wanted.value} id", code="no_recipient"
            )
        account = command.to.scope
        page = account
        if command.channel is Channel.INSTAGRAM:
            page = self.settings.instagram_pages.get(account, account)
        token = self.settings.page_token(page) or self.settings.page_token(account)
        if not token:
            raise SendError(f"no access token for page {page} (META_PAGE_TOKENS)", code="config")
        allowed = permit(command, utcnow())
        envelope: dict[str, Any] = {"recipient": {"id": command.to.value}}
        if allowed.tag:
            envelope.update(messaging_type="MESSAGE_TAG", tag=allowed.tag)
        else:
            envelope["messaging_type"] = "RESPONSE"
        ours = f"{OURS}{command.command_id}"
        messages: list[dict[str, Any]] = []
        for chunk in _chunks(command.text, TEXT_LIMIT[command.channel]):
            messages.append({"text": chunk})
        for attachment in command.attachments:
            uploaded = await self._upload_page(page, token, attachment)
            messages.append({"attachment": uploaded})
        first = ""
        for message in messages:
            if command.channel is Channel.MESSENGER:
                message["metadata"] = ours
            answer = await self.call(
                "POST", f"/{page}/messages", token, body={**envelope, "message": message}
            )
            first = first or str(answer.get("message_id") or "")
        if not first:
            raise SendError("Meta accepted the message but returned no message_id", code="protocol")
        return SendResult(provider_message_id=first, detail=f"{len(messages)} message(s)")

    async def _upload_page(self, page: str, token: str, attachment: Attachment) -> dict[str, Any]:
        if not attachment.blob:
            raise SendError("an attachment not in the hub's blob store", code="attachment")
        data = await self._blob(attachment.blob)
        family = (attachment.content_type or "").partition("/")[0]
        kind = _FAMILIES.get(family, "file")
        meta = {"attachment": {"type": kind, "payload": {"is_reusable": False}}}
        answer = await self.call(
            "POST",
            f"/{page}/message_attachments",
            token,
            data={"message": json.dumps(meta)},
            files={
                "filedata": (
                    attachment.name or "file",
                    data,
                    attachment.content_type or "application/octet-stream",
                )
            },
        )
        found = str(answer.get("attachment_id") or "")
        if not found:
            raise SendError("Meta returned no attachment_id", code="protocol")
        return {"type": kind, "payload": {"attachment_id": found}}

    async def _whatsapp(self, command: OutboundCommand) -> SendResult:
        settings = self.settings
        token, number = settings.wa_token(), settings.whatsapp_phone_number_id
        if not token or not number:
            raise SendError(
                "WhatsApp is not configured: META_WHATSAPP_TOKEN, META_WHATSAPP_PHONE_NUMBER_ID",
                code="config",
            )
        if command.to.type not in (IdentityType.WHATSAPP, IdentityType.PHONE):
            raise SendError("WhatsApp needs a phone number", code="no_recipient")
        template = command.attributes.get("template")
        permit(command, utcnow(), template=isinstance(template, str) and bool(template))
        base: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": command.to.value.lstrip("+"),
        }
        if command.thread and command.thread.reply_to:
            base["context"] = {"message_id": command.thread.reply_to}
        messages: list[dict[str, Any]] = []
        if isinstance(template, str) and template:
            messages.append({"type": "template", "template": _template(command, template)})
        else:
            for chunk in _chunks(command.text, TEXT_LIMIT[Channel.WHATSAPP]):
                messages.append({"type": "text", "text": {"body": chunk, "preview_url": False}})
        for attachment in command.attachments:
            kind, media_id = await self._upload_wa(number, token, attachment)
            body: dict[str, Any] = {"id": media_id}
            if kind == "document":
                body["filename"] = attachment.name or "file"
            messages.append({"type": kind, kind: body})
        first = ""
        for message in messages:
            answer = await self.call("POST", f"/{number}/messages", token, body={**base, **message})
            found = answer.get("messages") or [{}]
            first = first or str(found[0].get("id") or "")
        if not first:
            raise SendError("Meta accepted the message but returned no id", code="protocol")
        return SendResult(provider_message_id=first, detail=f"{len(messages)} message(s)")

    async def _upload_wa(self, number: str, token: str, attachment: Attachment) -> tuple[str, str]:
        if not attachment.blob:
            raise SendError("an attachment not in the hub's blob store", code="attachment")
        data = await self._blob(attachment.blob)
        content_type = attachment.content_type or "application/octet-stream"
        kind = _FAMILIES.get(content_type.partition("/")[0], "document")
        answer = await self.call(
            "POST",
            f"/{number}/media",
            token,
            data={"messaging_product": "whatsapp", "type": content_type},
            files={"file": (attachment.name or "file", data, content_type)},
        )
        media_id = str(answer.get("id") or "")
        if not media_id:
            raise SendError("Meta returned no media id", code="protocol")
        return kind, media_id

    async def check_token(self) -> str | None:
        """Why a configured token is unusable (``GET /me``), None when Meta takes them all;
        a network failure says nothing about the token (None)."""
        tokens = {t.get_secret_value() for t in self.settings.page_tokens.values()}
        for secret in (self.settings.access_token, self.settings.whatsapp_token):
            if secret is not None:
                tokens.add(secret.get_secret_value())
        for token in sorted(tokens):
            try:
                async with asyncio.timeout(self.settings.send_timeout):
                    await self._once("GET", "/me", token, None, None, None)
            except SendError as exc:
                if exc.code == str(TOKEN_INVALID):
                    return str(exc)
            except (_Again, TimeoutError):
                continue
        return None


def _template(command: OutboundCommand, name: str) -> dict[str, Any]:
    """A WhatsApp template by name, language and body parameters (JSON list of strings)."""
    language = command.attributes.get("template_language") or "en_US"
    template: dict[str, Any] = {"name": name, "language": {"code": str(language)}}
    raw = command.attributes.get("template_parameters")
    if isinstance(raw, str) and raw:
        try:
            values = json.loads(raw)
        except ValueError:
            raise SendError("template_parameters is not a JSON list", code="template") from None
        if not isinstance(values, list):
            raise SendError("template_parameters is not a JSON list", code="template")
        parameters = [{"type": "text", "text": str(v)} for v in values]
        template["components"] = [{"type": "body", "parameters": parameters}]
    return template


def _chunks(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a line or a space."""
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit)
        if cut <= limit // 2:
            cut = rest.rfind(" ", 0, limit)
        if cut <= limit // 2:
            cut = limit
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest.strip():
        pieces.append(rest)
    return pieces

"""Replies as X direct messages: X API v2 ``POST /2/dm_conversations/with/{participant_id}/
messages`` with ``{"text": ..., "attachments": [{"media_id": ...}]}``, a file first uploaded
with ``POST /2/media/upload`` (category ``dm_image`` or ``dm_gif``).

What X answers decides the delivery state: the returned ``dm_event_id`` is the message's
provider id (echoes and read receipts find it); a 429 is waited out up to
``X_MAX_RETRY_AFTER`` (``retry-after``, else ``x-rate-limit-reset``), never retried at once;
401, and a 403 about the app or its token, mean the credentials no longer work: the adapter
turns unhealthy and raises ``CredentialsRefused``, an ``OSError``, which the dispatcher
retries with back-off instead of failing the message; any other refusal fails the message
with X's own words."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from channels.base import SendError, SendResult
from channels.base.http import ReusedClient
from channels.x.config import XSettings
from channels.x.oauth import authorization
from schemas import IdentityType, OutboundCommand

log = logging.getLogger(__name__)

#: Problem types of a 403 that concern the app or its token, not one recipient.
CREDENTIAL_PROBLEMS = ("client-forbidden", "oauth1-permissions", "unsupported-authentication")
#: What X's simple media upload takes in a DM (videos need the chunked upload).
UPLOADABLE = {
    "image/jpeg": "dm_image",
    "image/png": "dm_image",
    "image/webp": "dm_image",
    "image/gif": "dm_gif",
}


class CredentialsRefused(OSError):
    """X refused the account's token or the app (revoked, suspended, wrong permissions): not
    the message's fault, so it stays queued (the dispatcher retries an OSError with back-off)
    until the credentials are fixed."""


@dataclass
class TokenState:
    """What the adapter last learnt about its credentials (refused: unhealthy)."""

    refused: str | None = None
    checked_at: float = 0.0


@dataclass(frozen=True)
class Problem:
    """An error answer of X's API, in X's words."""

    status: int
    title: str
    detail: str
    type: str
    wait: float | None = None

    def describe(self) -> str:
        """X's words with the status, for the delivery state and the logs."""
        said = self.detail or self.title or "no detail"
        kind = f", {self.type.rsplit('/', 1)[-1]}" if self.type.startswith("http") else ""
        return f"X answered {self.status}{kind}: {said[:500]}"

    @property
    def credentials(self) -> bool:
        """Whether the refusal is about the app or the token rather than this message."""
        return self.status == 401 or (
            self.status == 403 and any(p in self.type for p in CREDENTIAL_PROBLEMS)
        )


def problem(answer: httpx.Response, now: float) -> Problem:
    """X's error body (v2 problem, or v1.1 ``errors``) and how long a 429 asks to wait."""
    try:
        body = answer.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    detail = str(body.get("detail") or first.get("message") or first.get("detail") or "")
    return Problem(
        status=answer.status_code,
        title=str(body.get("title") or ""),
        detail=detail,
        type=str(body.get("type") or first.get("type") or ""),
        wait=rate_wait(answer.headers, now) if answer.status_code == 429 else None,
    )


def rate_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until X takes requests again: ``retry-after``, else ``x-rate-limit-reset``
    (epoch seconds); None when neither says."""
    after = headers.get("retry-after", "").strip()
    if after.isdigit():
        return float(after)
    reset = headers.get("x-rate-limit-reset", "").strip()
    if reset.isdigit():
        return max(0.0, float(reset) - now)
    return None


class XSender:
    """Sends one account's replies (one HTTP client, reused)."""

    def __init__(
        self,
        settings: XSettings,
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

    def headers(self, method: str, url: str) -> dict[str, str]:
        """The user-context authorization of a call: the OAuth 2.0 token when configured,
        else an OAuth 1.0a signature; SendError when neither is set."""
        bearer = self.settings.bearer()
        if bearer:
            return {"authorization": f"Bearer {bearer}"}
        credentials = self.settings.oauth1()
        if credentials is None:
            raise SendError(
                "no X credentials: " + "; ".join(self.settings.missing()), code="config"
            )
        return {"authorization": authorization(method, url, credentials)}

    # --- one call ---------------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        files: dict[str, tuple[str, bytes, str]] | None = None,
        data: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """One API call, retried with back-off while X provably did not act (a connection
        refused, 5xx) or asks to wait (429, within ``X_MAX_RETRY_AFTER``)."""
        url = f"{self.settings.api_base_url}{path}"
        delay = self.settings.send_backoff
        attempts = self.settings.send_attempts
        for attempt in range(1, attempts + 1):
            try:
                answer = await self._http().request(
                    method,
                    url,
                    headers=self.headers(method, url),
                    json=json,
                    files=files,
                    data=data,
                )
            except httpx.ConnectError as exc:
                if attempt == attempts:
                    raise SendError(
                        f"X unreachable: {exc}", code="network", retryable=True
                    ) from exc
                await self._pause(delay)
                delay *= 2
                continue
            except httpx.HTTPError as exc:  # sent, maybe taken: never sent twice
                raise SendError(f"X did not answer: {exc!r}", code="network") from exc
            if answer.status_code < 300:
                self.tokens.refused = None
                found = answer.json()
                return found if isinstance(found, dict) else {}
            said = problem(answer, time.time())
            if said.credentials:
                self.tokens.refused = said.describe()
                log.warning("x: credentials refused: %s", said.describe())
                raise CredentialsRefused(said.describe())
            if said.status == 429:
                wait = said.wait if said.wait is not None else delay
                if attempt == attempts or wait > self.settings.max_retry_after:
                    raise SendError(
                        f"X is rate limiting the account ({said.describe()}); it takes "
                        f"requests again in {wait:.0f} s",
                        code="rate_limited",
                        retryable=True,
                    )
                await asyncio.sleep(max(wait, delay))  # never sooner than the back-off
                delay *= 2
                continue
            if said.status >= 500 and attempt < attempts:
                await self._pause(delay)
                delay *= 2
                continue
            raise SendError(said.describe(), code=_code(said), retryable=said.status >= 500)
        raise AssertionError("unreachable")

    @staticmethod
    async def _pause(delay: float) -> None:
        await asyncio.sleep(min(delay, 30.0) * (0.5 + random.random()))  # noqa: S311

    # --- a reply ----------------------------------------------------------------------------

    async def send(self, command: OutboundCommand) -> SendResult:
        """Send ``command`` as a DM to its X identity; the DM event's id as provider id."""
        to = command.to
        if to.type is not IdentityType.X:
            raise SendError("an X reply needs the customer's X identity", code="no_recipient")
        if self.settings.user_id and to.scope != self.settings.user_id:
            raise SendError(
                f"the customer's X identity belongs to account {to.scope}, not X_USER_ID",
                code="wrong_account",
            )
        body: dict[str, Any] = {"text": command.text}
        if command.attachments:
            body["attachments"] = [{"media_id": await self._upload(command)}]
        found = await self.call("POST", f"/2/dm_conversations/with/{to.value}/messages", json=body)
        data = _obj(found.get("data"))
        event = str(data.get("dm_event_id") or "")
        if not event:
            raise SendError("X accepted the message but returned no dm_event_id", code="protocol")
        return SendResult(provider_message_id=event)

    async def _upload(self, command: OutboundCommand) -> str:
        """Upload the reply's one file (X takes one per DM); its media id."""
        if len(command.attachments) > 1:
            raise SendError("X takes one file per direct message", code="too_many_files")
        [file] = command.attachments
        kind = (file.content_type or "").lower()
        category = UPLOADABLE.get(kind)
        if category is None:
            raise SendError(
                f"X DMs take JPEG, PNG, WebP or GIF images here, not {kind or 'this file'}",
                code="unsupported_media",
            )
        if file.blob is None:
            raise SendError("an attachment not in the hub's blob store", code="attachment")
        content = await self._blob(file.blob)
        found = await self.call(
            "POST",
            "/2/media/upload",
            files={"media": (file.name or "file", content, kind)},
            data={"media_category": category, "media_type": kind},
        )
        data = _obj(found.get("data"))
        media = str(data.get("id") or "")
        if not media:
            raise SendError("X returned no media id", code="protocol")
        return media

    async def check(self) -> None:
        """Ask X whether the credentials still work (``GET /2/users/me``), recording the
        answer; a network failure changes nothing."""
        url = f"{self.settings.api_base_url}/2/users/me"
        try:
            answer = await self._http().get(url, headers=self.headers("GET", url), timeout=3.0)
        except (httpx.HTTPError, SendError) as exc:
            log.info("x: credentials not checked: %r", exc)
            return
        if answer.status_code < 300:
            self.tokens.refused = None
            return
        said = problem(answer, time.time())
        if said.credentials:
            self.tokens.refused = said.describe()


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _code(said: Problem) -> str:
    """The delivery state's error code of a refusal."""
    return {
        400: "invalid_request",
        403: "forbidden",
        404: "not_found",
        413: "too_large",
    }.get(said.status, "server_error" if said.status >= 500 else f"http_{said.status}")

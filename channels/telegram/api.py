"""A small Bot API client (httpx): one method call, its answer or Telegram's error, and the
retry policy Telegram asks for.

Every call is ``POST <base>/bot<token>/<method>``; Telegram answers
``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": ..., "description": ...,
"parameters": {"retry_after": ...}}``. Only what Telegram provably did not take is tried
again: 429 after the ``retry_after`` it names (never a tight loop), 5xx and failed
connections with exponential back-off. A timeout is not retried (the message may exist).
The token is part of every URL: it is kept out of error messages and httpx's request log.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from channels.base.http import ReusedClient
from channels.telegram.config import TelegramSettings

log = logging.getLogger(__name__)

#: A bot token wherever it may appear in a URL or a message.
_TOKEN_IN_TEXT = re.compile(r"bot[0-9]{1,20}:[A-Za-z0-9_-]{20,100}")


def redact(text: str) -> str:
    """``text`` with any bot token replaced (a URL of the Bot API carries one)."""
    return _TOKEN_IN_TEXT.sub("bot<token>", text)


class _RedactTokens(logging.Filter):
    """Keeps bot tokens out of httpx's ``HTTP Request: POST <url>`` log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "bot" in message:
            redacted = redact(message)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


_FILTER = _RedactTokens()


def quiet_tokens() -> None:
    """Install the redacting filter on httpx's logger (once)."""
    httpx_log = logging.getLogger("httpx")
    if _FILTER not in httpx_log.filters:
        httpx_log.addFilter(_FILTER)


class ApiError(Exception):
    """Telegram's refusal (``error_code`` is its HTTP status), or a failure to reach it
    (``error_code`` 0). ``retryable``: the call provably did not happen and may be made
    again; ``uncertain``: Telegram may have done it (a timeout), so it never is."""

    def __init__(
        self,
        error_code: int,
        description: str,
        retry_after: float | None = None,
        retryable: bool = False,
        uncertain: bool = False,
    ) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.retry_after = retry_after
        self.retryable = retryable
        self.uncertain = uncertain


class BotApi:
    """Calls the Bot API for one bot (one httpx client, made on first use)."""

    def __init__(self, settings: TelegramSettings) -> None:
        self.settings = settings
        self._http = ReusedClient(settings.send_timeout)
        quiet_tokens()

    async def close(self) -> None:
        """Close the HTTP client."""
        await self._http.close()

    def _token(self) -> str:
        token = self.settings.token()
        if not token:
            raise ApiError(0, "TELEGRAM_BOT_TOKEN is not set")
        return token

    def method_url(self, method: str) -> str:
        """``<base>/bot<token>/<method>``."""
        return f"{self.settings.api_base_url}/bot{self._token()}/{method}"

    def file_url(self, file_path: str) -> str:
        """Where a file getFile named is downloaded: ``<base>/file/bot<token>/<file_path>``;
        ApiError for a path that would leave that folder."""
        if not file_path or file_path.startswith("/") or ".." in file_path.split("/"):
            raise ApiError(0, "getFile named no usable file_path")
        return f"{self.settings.api_base_url}/file/bot{self._token()}/{quote(file_path)}"

    async def call_once(
        self,
        method: str,
        data: Mapping[str, Any],
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Any:
        """One call; its ``result``, or ApiError."""
        url = self.method_url(method)
        try:
            if files:
                fields = {k: str(v) for k, v in data.items()}
                answer = await self._http().post(url, data=fields, files=files)
            else:
                answer = await self._http().post(url, json=dict(data))
        except httpx.TimeoutException as exc:
            connect = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise ApiError(
                0,
                f"the Bot API did not answer {method} within {self.settings.send_timeout} s",
                retryable=connect,
                uncertain=not connect,
            ) from None
        except httpx.TransportError as exc:
            detail = redact(str(exc) or type(exc).__name__)
            # Only a connection never made is surely not a call Telegram received.
            sure = isinstance(exc, httpx.ConnectError)
            raise ApiError(
                0, f"the Bot API is unreachable: {detail}", retryable=sure, uncertain=not sure
            ) from None
        return self._result(method, answer)

    @staticmethod
    def _result(method: str, answer: httpx.Response) -> Any:
        try:
            body = answer.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(
                answer.status_code or 0,
                f"the Bot API answered {method} with HTTP {answer.status_code} and no JSON",
                retryable=answer.status_code >= 500,
            )
        if body.get("ok") is True and answer.status_code == 200:
            return body.get("result")
        code = body.get("error_code")
        code = code if isinstance(code, int) else answer.status_code
        description = redact(str(body.get("description") or f"HTTP {code}"))[:1000]
        parameters = body.get("parameters")
        retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
        wait = float(retry_after) if isinstance(retry_after, int | float) else None
        if code == 429:
            raise ApiError(code, description, wait if wait is not None else 1.0, retryable=True)
        raise ApiError(code, description, retryable=code >= 500)

    async def call(
        self,
        method: str,
        data: Mapping[str, Any],
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
    ) -> Any:
        """A call, tried again as Telegram asks (``retry_after``) or after a failure that
        may pass, up to TELEGRAM_SEND_ATTEMPTS attempts; ApiError when it did not succeed.
        A ``retry_after`` over TELEGRAM_MAX_RETRY_AFTER is not waited: the error is raised."""
        settings = self.settings
        delay = settings.send_backoff
        for attempt in range(1, settings.send_attempts + 1):
            try:
                return await self.call_once(method, data, files)
            except ApiError as exc:
                if not exc.retryable or attempt == settings.send_attempts:
                    raise
                if exc.retry_after is not None:
                    if exc.retry_after > settings.max_retry_after:
                        raise
                    wait = exc.retry_after
                else:
                    wait, delay = delay, min(delay * 2, 30.0)
                log.info(
                    "telegram: %s failed (%s), attempt %d, again in %.2f s",
                    method,
                    exc.description,
                    attempt,
                    wait,
                )
                await asyncio.sleep(wait)
        raise AssertionError("unreachable")

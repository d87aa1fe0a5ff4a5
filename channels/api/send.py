"""Deliver a reply to the integration's callback URL, signed, with retries and backoff."""

from __future__ import annotations

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from channels.api.config import ApiChannelSettings
from channels.base import SendError, SendResult
from channels.base.signing import SIGNATURE_HEADER, sign
from schemas import OutboundCommand


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, httpx.TransportError) or (isinstance(exc, SendError) and exc.retryable)


async def post_reply(
    client: httpx.AsyncClient, settings: ApiChannelSettings, command: OutboundCommand
) -> SendResult:
    """POST the command as JSON with X-Omnihub-Signature; retry 5xx, 429 and network errors."""
    if not settings.callback_url or not settings.callback_secret:
        raise SendError("the API channel has no callback URL and secret configured", code="config")
    body = command.model_dump_json().encode()
    headers = {
        "content-type": "application/json",
        SIGNATURE_HEADER: sign(settings.callback_secret, body),
        "X-Omnihub-Command-Id": str(command.command_id),
    }

    async def attempt() -> SendResult:
        response = await client.post(
            settings.callback_url or "",
            content=body,
            headers=headers,
            timeout=settings.callback_timeout,
        )
        if response.status_code >= 500 or response.status_code == 429:
            raise SendError(
                f"callback answered {response.status_code}",
                code=str(response.status_code),
                retryable=True,
            )
        if not 200 <= response.status_code < 300:
            raise SendError(
                f"callback refused the reply with {response.status_code}",
                code=str(response.status_code),
            )
        provider_id = response.headers.get("X-Message-Id") or str(command.command_id)
        return SendResult(provider_message_id=provider_id)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(settings.callback_attempts),
        wait=wait_exponential_jitter(initial=settings.callback_backoff, max=30),
        retry=retry_if_exception(_retryable),
        reraise=True,
    )
    try:
        async for try_ in retrying:
            with try_:
                return await attempt()
    except httpx.TransportError as exc:
        raise SendError(f"callback unreachable: {exc!r}", code="network") from exc
    raise SendError("unreachable: retry loop ended without result")  # pragma: no cover

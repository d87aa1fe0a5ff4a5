"""Send an SMS through Twilio's REST API, asynchronously, with the twilio library.

The twilio client runs on its aiohttp-based ``AsyncTwilioHttpClient`` (created in the running
loop on first use), so a send never blocks the event loop. Only what Twilio provably did not
take is retried: 429 (rate limited), 503 and connection failures. A timeout is not retried, as
Twilio may have created the message and a second POST would send it twice.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from channels.base import SendError, SendResult
from channels.twilio.config import TwilioSettings
from channels.twilio.models import MESSAGE_STATES, Webhook, describe_error
from channels.twilio.segments import count_segments
from schemas import Channel, DeliveryState, IdentityType, OutboundCommand

log = logging.getLogger(__name__)

#: HTTP statuses after which Twilio has not created the message, so a retry is safe.
RETRYABLE_STATUS = frozenset({429, 503})


class _Retry(Exception):
    """An attempt Twilio provably did not take."""

    def __init__(self, error: SendError) -> None:
        super().__init__(str(error))
        self.error = error


class TwilioSender:
    """Owns the twilio REST client of one adapter instance."""

    def __init__(self, settings: TwilioSettings) -> None:
        self.settings = settings
        self._http: AsyncTwilioHttpClient | None = None
        self._client: Any = None

    def _rest(self) -> Any:
        """The twilio client, made on first use (its aiohttp session needs the running loop)."""
        if self._client is None:
            # The twilio client logs every request at INFO; keep that for DEBUG runs only.
            http_log = logging.getLogger("channels.twilio.http")
            if not log.isEnabledFor(logging.DEBUG):
                http_log.setLevel(logging.WARNING)
            self._http = AsyncTwilioHttpClient(logger=http_log)
            client = Client(
                self.settings.account_sid, self.settings.token(), http_client=self._http
            )
            # Twilio's REST API for Messages lives on the Api domain; pointing its base URL
            # elsewhere is only for testing against a stand-in.
            client.api.base_url = self.settings.api_base_url.rstrip("/")
            self._client = client
        return self._client

    def _params(self, command: OutboundCommand) -> dict[str, Any]:
        settings = self.settings
        if command.channel is not Channel.SMS:
            raise SendError(
                f"the Twilio adapter sends SMS, not {command.channel.value}",
                code="unsupported_channel",
            )
        if command.to.type is not IdentityType.PHONE:
            raise SendError(
                f"an SMS needs a phone number, not {command.to.type.value}", code="no_phone"
            )
        missing = [m for m in settings.missing() if m != "OMNIHUB_PUBLIC_URL"]
        if missing:
            raise SendError(f"Twilio is not configured: {', '.join(missing)}", code="config")
        params: dict[str, Any] = {"to": command.to.value, "body": command.text}
        if settings.messaging_service_sid:
            params["messaging_service_sid"] = settings.messaging_service_sid
        if settings.from_number:
            params["from_"] = settings.from_number
        callback = settings.webhook_url("/" + Webhook.MESSAGE_STATUS.value)
        if callback:
            params["status_callback"] = callback
        return params

    async def _attempt(self, params: dict[str, Any]) -> Any:
        try:
            async with asyncio.timeout(self.settings.send_timeout):
                return await self._rest().messages.create_async(**params)
        except TwilioRestException as exc:
            code = str(exc.code or exc.status)
            retryable = exc.status in RETRYABLE_STATUS or exc.status >= 500
            error = SendError(describe_error(code, str(exc.msg)), code=code, retryable=retryable)
            if exc.status in RETRYABLE_STATUS:
                raise _Retry(error) from exc
            raise error from exc
        except aiohttp.ClientConnectorError as exc:  # never reached Twilio
            raise _Retry(SendError(f"Twilio unreachable: {exc}", code="network")) from exc
        except TimeoutError:
            raise SendError(
                f"Twilio did not answer within {self.settings.send_timeout} s; the message may "
                "or may not have been created",
                code="timeout",
                retryable=True,
            ) from None
        except aiohttp.ClientError as exc:
            raise SendError(f"Twilio request failed: {exc!r}", code="network") from exc

    async def send(self, command: OutboundCommand) -> SendResult:
        """Create the message; SendError(code=<Twilio error code>) when Twilio refuses it."""
        params = self._params(command)
        segments = count_segments(command.text)
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.send_attempts),
            wait=wait_exponential_jitter(initial=self.settings.send_backoff, max=30),
            retry=retry_if_exception(lambda exc: isinstance(exc, _Retry)),
            reraise=True,
        )
        message: Any = None
        try:
            async for attempt in retrying:
                with attempt:
                    message = await self._attempt(params)
        except _Retry as exc:
            raise exc.error from None
        sid = str(message.sid or "")
        status = str(message.status or "queued")
        if not sid:
            raise SendError("Twilio accepted the message but returned no sid", code="protocol")
        state = MESSAGE_STATES.get(status, DeliveryState.QUEUED)
        if state in (DeliveryState.FAILED, DeliveryState.UNDELIVERED):
            code = str(message.error_code or "")
            if code:
                raise SendError(describe_error(code, message.error_message), code=code)
            raise SendError(f"Twilio reported the message as {status}", code=status)
        log.debug("twilio: %s %s (%s)", sid, status, segments)
        return SendResult(provider_message_id=sid, state=state, detail=str(segments))

    async def close(self) -> None:
        """Close the aiohttp session of the twilio client."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close()

"""The one way a provider's webhook is handled: verify, parse, publish, then acknowledge."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from channels.base.adapter import ChannelAdapter, InboundRequest
from channels.base.errors import (
    ParseError,
    PayloadTooLarge,
    SignatureError,
    UnsupportedMediaType,
)
from channels.base.publisher import Publisher, PublishError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WebhookReply:
    """What the provider gets back."""

    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"


async def receive(
    adapter: ChannelAdapter, publisher: Publisher, request: InboundRequest
) -> WebhookReply:
    """Handle one webhook call; the provider sees a 2xx only after the broker acknowledged.

    - a bad or missing signature: 403, nothing published;
    - a body the adapter will not read (too large, wrong media type): 413 or 415, nothing
      published;
    - authentic but unparseable: the raw request goes to the dead-letter topic with the
      reason, and the provider gets a 2xx so it does not retry what can never succeed;
    - the broker does not acknowledge: 503, so the provider retries later.
    """
    try:
        adapter.verify(request)
    except SignatureError as exc:
        log.warning("%s: refused webhook: %s", adapter.name, exc)
        return WebhookReply(403, b"invalid signature")
    except PayloadTooLarge as exc:
        return WebhookReply(413, str(exc).encode())
    except UnsupportedMediaType as exc:
        return WebhookReply(415, str(exc).encode())
    try:
        try:
            interactions = adapter.parse(request)
        except ParseError as exc:
            await publisher.dead_letter(request, str(exc), stage=f"channels/{adapter.name}")
            return adapter.acknowledge(request, [])
        if interactions:
            await publisher.publish(interactions)
    except PublishError:
        return WebhookReply(503, b"event bus unavailable, retry later")
    return adapter.acknowledge(request, interactions)

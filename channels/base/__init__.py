"""The adapter contract every channel implements, and the pieces adapters share."""

from channels.base.adapter import ChannelAdapter, Health, InboundRequest, SendResult
from channels.base.delivery import UNRESOLVED_COMMAND
from channels.base.errors import (
    ChannelError,
    ParseError,
    PayloadTooLarge,
    SendError,
    SignatureError,
    UnsupportedMediaType,
)
from channels.base.publisher import Publisher, PublishError
from channels.base.webhook import WebhookReply, receive

__all__ = [
    "UNRESOLVED_COMMAND",
    "ChannelAdapter",
    "ChannelError",
    "Health",
    "InboundRequest",
    "ParseError",
    "PayloadTooLarge",
    "PublishError",
    "Publisher",
    "SendError",
    "SendResult",
    "SignatureError",
    "UnsupportedMediaType",
    "WebhookReply",
    "receive",
]

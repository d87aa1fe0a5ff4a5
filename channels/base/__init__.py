"""The channel contract: what every adapter is (``ChannelAdapter``), the three shapes its
inbound side can take (``WebhookAdapter``, ``SourceAdapter``, ``SessionAdapter``; and
``StagingAdapter`` to answer a sender before reading what it sent; ``MediaAdapter`` to fetch a
message's file again), its ``Manifest``, and the pieces adapters share."""

from channels.base.adapter import ChannelAdapter, ChannelEvent, Health, InboundRequest, SendResult
from channels.base.blobs import BlobMissing, BlobStore, FileBlobStore, blob_id
from channels.base.conversation import ConversationLog, Entry
from channels.base.delivery import UNRESOLVED_COMMAND
from channels.base.errors import (
    ChannelError,
    ParseError,
    PayloadTooLarge,
    SendError,
    SendRefused,
    SignatureError,
    UnsupportedMediaType,
)
from channels.base.manifest import ChannelInfo, Listener, Manifest, ReplyWindow
from channels.base.media import Media, MediaAdapter, MediaRefused, MediaUnavailable
from channels.base.publisher import Publisher, PublishError
from channels.base.session import (
    ClientConnection,
    HeldSessions,
    SessionAdapter,
    SessionClosed,
    SessionRoute,
)
from channels.base.source import PollingSource, SourceAdapter
from channels.base.staging import StagingAdapter, stage
from channels.base.state import SourceState, StateValue
from channels.base.typing import Typing
from channels.base.webhook import Audience, Route, WebhookAdapter, WebhookReply, receive

__all__ = [
    "UNRESOLVED_COMMAND",
    "Audience",
    "BlobMissing",
    "BlobStore",
    "ChannelAdapter",
    "ChannelError",
    "ChannelEvent",
    "ChannelInfo",
    "ClientConnection",
    "ConversationLog",
    "Entry",
    "FileBlobStore",
    "Health",
    "HeldSessions",
    "InboundRequest",
    "Listener",
    "Manifest",
    "Media",
    "MediaAdapter",
    "MediaRefused",
    "MediaUnavailable",
    "ParseError",
    "PayloadTooLarge",
    "PollingSource",
    "PublishError",
    "Publisher",
    "ReplyWindow",
    "Route",
    "SendError",
    "SendRefused",
    "SendResult",
    "SessionAdapter",
    "SessionClosed",
    "SessionRoute",
    "SignatureError",
    "SourceAdapter",
    "SourceState",
    "StagingAdapter",
    "StateValue",
    "Typing",
    "UnsupportedMediaType",
    "WebhookAdapter",
    "WebhookReply",
    "blob_id",
    "receive",
    "stage",
]

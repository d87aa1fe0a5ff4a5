"""Web chat: the widget's WebSocket (visitors in, agents' replies out through whichever web
process holds the visitor's socket), signed visitor ids and sites' signed-in users."""

from pathlib import Path

from channels.base import ChannelInfo, Manifest
from channels.webchat.adapter import WebchatAdapter
from channels.webchat.config import WebchatSettings
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="webchat",
    title="Web chat: the website widget's WebSocket",
    adapter=WebchatAdapter,
    channels=(
        ChannelInfo(
            Channel.WEBCHAT,
            label="Web chat",
            icon="💬",
            recipients=(IdentityType.WEBCHAT_VISITOR,),
            shows_typing=True,
        ),
    ),
    settings=(WebchatSettings,),
    assets=Path(__file__).parent / "static",
)

__all__ = ["MANIFEST", "WebchatAdapter"]

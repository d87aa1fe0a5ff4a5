"""Meta: Messenger, Instagram and WhatsApp (Cloud API) through one app's webhook, replies
through the Graph API."""

from channels.base import ChannelInfo, Manifest
from channels.meta.adapter import MetaAdapter
from channels.meta.config import MetaSettings
from channels.meta.window import WINDOWS
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="meta",
    title="Meta: Messenger, Instagram and WhatsApp messages in and out (Graph API)",
    adapter=MetaAdapter,
    channels=(
        ChannelInfo(
            Channel.MESSENGER,
            label="Messenger",
            icon="ⓜ",
            recipients=(IdentityType.FACEBOOK,),
            sends_files=True,
            reply_window=WINDOWS[Channel.MESSENGER],
        ),
        ChannelInfo(
            Channel.INSTAGRAM,
            label="Instagram",
            icon="◎",
            recipients=(IdentityType.INSTAGRAM,),
            sends_files=True,
            reply_window=WINDOWS[Channel.INSTAGRAM],
        ),
        ChannelInfo(
            Channel.WHATSAPP,
            label="WhatsApp",
            icon="✆",
            recipients=(IdentityType.WHATSAPP,),
            sends_files=True,
            reply_window=WINDOWS[Channel.WHATSAPP],
        ),
    ),
    settings=(MetaSettings,),
)

__all__ = ["MANIFEST", "MetaAdapter"]

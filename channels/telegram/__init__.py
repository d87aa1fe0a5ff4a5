"""Telegram: a bot's private chats (webhook in, Bot API out); groups ignored or recorded."""

from channels.base import ChannelInfo, Manifest
from channels.telegram.adapter import TelegramAdapter
from channels.telegram.config import TelegramSettings
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="telegram",
    title="Telegram: a bot's chats in by webhook, replies, photos and files out",
    adapter=TelegramAdapter,
    channels=(
        ChannelInfo(
            Channel.TELEGRAM,
            label="Telegram",
            icon="✈",
            recipients=(IdentityType.TELEGRAM,),
            sends_files=True,
        ),
    ),
    settings=(TelegramSettings,),
)

__all__ = ["MANIFEST", "TelegramAdapter"]

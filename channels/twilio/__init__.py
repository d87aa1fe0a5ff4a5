"""Twilio: SMS and MMS, phone calls and voicemail (webhooks in), SMS (REST API out)."""

from channels.base import ChannelInfo, Manifest
from channels.twilio.adapter import TwilioAdapter
from channels.twilio.config import TwilioSettings
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="twilio",
    title="Twilio: SMS and MMS in and out, phone calls answered by voicemail",
    adapter=TwilioAdapter,
    channels=(
        ChannelInfo(Channel.SMS, label="SMS", icon="✉", recipients=(IdentityType.PHONE,)),
        ChannelInfo(Channel.VOICE, label="Phone", icon="☎", recipients=(IdentityType.PHONE,)),
    ),
    settings=(TwilioSettings,),
)

__all__ = ["MANIFEST", "TwilioAdapter"]

"""The generic API channel: any system posts interactions as JSON and receives replies."""

from channels.api.adapter import ApiAdapter
from channels.api.config import ApiChannelSettings
from channels.base import ChannelInfo, Manifest
from schemas import Channel

MANIFEST = Manifest(
    name="api",
    title="Any system posts interactions as JSON; replies are POSTed back, signed",
    adapter=ApiAdapter,
    channels=(ChannelInfo(Channel.API, label="API", icon="⇄", recipients=None),),
    settings=(ApiChannelSettings,),
    with_hub_api=True,
)

__all__ = ["MANIFEST", "ApiAdapter"]

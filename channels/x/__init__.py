"""X (Twitter): one account's direct messages, by the Account Activity API's webhook in and
X API v2 out. Off unless X_ENABLED (X's DM webhooks need its paid enterprise tier)."""

from channels.base import ChannelInfo, Manifest
from channels.x.adapter import XAdapter
from channels.x.config import XSettings, switched_on
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="x",
    title="X: an account's direct messages in by webhook, replies and images out (X_ENABLED)",
    adapter=XAdapter,
    channels=(
        ChannelInfo(
            Channel.X,
            label="X",
            icon="𝕏",  # noqa: RUF001 - the symbol X itself uses
            recipients=(IdentityType.X,),
            sends_files=True,
        ),
    ),
    settings=(XSettings,),
    enabled=switched_on,
)

__all__ = ["MANIFEST", "XAdapter"]

"""Email: an SMTP server, IMAP polling and the mail services' inbound webhooks in; a relay
out. Parsing is in :mod:`channels.email.mime`, threading in :mod:`channels.email.threads`."""

from channels.base import ChannelInfo, Listener, Manifest
from channels.email.adapter import EmailAdapter
from channels.email.config import EmailSettings
from channels.email.imap_config import ImapSettings
from channels.email.relay_config import RelaySettings
from channels.email.webhook_config import InboundWebhookSettings
from schemas import Channel, IdentityType

MANIFEST = Manifest(
    name="email",
    title="Email: SMTP server, IMAP polling and inbound webhooks in, a relay out",
    adapter=EmailAdapter,
    channels=(
        ChannelInfo(
            Channel.EMAIL,
            label="Email",
            icon="@",
            recipients=(IdentityType.EMAIL,),
            sends_files=True,
        ),
    ),
    settings=(EmailSettings, RelaySettings, InboundWebhookSettings, ImapSettings),
    listeners=(Listener("smtp", 2525, "OMNIHUB_SMTP_PORT", "OMNIHUB_SMTP_HOST"),),
)

__all__ = ["MANIFEST", "EmailAdapter"]

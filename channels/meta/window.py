"""Meta's messaging windows, checked before anything is sent: a free-form reply only within 24
hours of the customer's last message on the channel; on Messenger and Instagram a person's
reply (not an automatic one) up to 7 days with the HUMAN_AGENT tag; WhatsApp templates at any
time. The hub attaches when the customer last wrote (the command's ``last_inbound_at``
attribute, ISO 8601, absent when they never did)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from channels.base.errors import SendRefused
from channels.base.manifest import ReplyWindow
from schemas import Channel, OutboundCommand

STANDARD = timedelta(hours=24)
HUMAN_AGENT = timedelta(days=7)
#: Each channel's window, declared in the manifest (the console shows it) and applied here.
WINDOWS = {
    Channel.MESSENGER: ReplyWindow(free=STANDARD, by_person=HUMAN_AGENT),
    Channel.INSTAGRAM: ReplyWindow(free=STANDARD, by_person=HUMAN_AGENT),
    Channel.WHATSAPP: ReplyWindow(free=STANDARD, templates=True),
}
#: The attribute the hub sets on commands of channels with a reply window.
LAST_INBOUND = "last_inbound_at"
#: How a console user is named in ``requested_by`` (``services/console``: ``console:<user>``).
CONSOLE_USER = "console:"
OUTSIDE = "outside_24h_window"


@dataclass(frozen=True)
class Permit:
    """How a message may go: as a response, or tagged (Messenger's ``HUMAN_AGENT``)."""

    tag: str | None = None


def last_inbound(command: OutboundCommand) -> datetime | None:
    """When the customer last wrote, as the hub attached it; None if never (or unreadable)."""
    value = command.attributes.get(LAST_INBOUND)
    if not isinstance(value, str):
        return None
    try:
        found = datetime.fromisoformat(value)
    except ValueError:
        return None
    return found if found.tzinfo is not None else None


def permit(command: OutboundCommand, now: datetime, *, template: bool = False) -> Permit:
    """The way ``command`` may be sent now; SendRefused (``outside_24h_window``) when Meta
    would refuse it."""
    window = WINDOWS[command.channel]
    if template and window.templates:
        return Permit()
    last = last_inbound(command)
    if window.open(last, now):
        return Permit()
    human = command.requested_by.startswith(CONSOLE_USER)
    tagged = window.by_person is not None
    if human and window.open(last, now, person=True):
        return Permit(tag="HUMAN_AGENT")
    if last is None:
        why = f"the customer has never written on {command.channel.value}"
    else:
        hours = int((now - last).total_seconds() // 3600)
        why = f"the customer last wrote {hours} hours ago"
    if command.channel is Channel.WHATSAPP:
        rule = "WhatsApp allows free-form replies for 24 hours; send a template instead"
    elif tagged and not human:
        rule = (
            "Meta allows replies for 24 hours; only a person's reply may go later "
            "(HUMAN_AGENT tag, up to 7 days)"
        )
    else:
        rule = "Meta allows replies for 24 hours (a person's for 7 days)"
    raise SendRefused(f"outside the messaging window: {why}; {rule}", code=OUTSIDE)

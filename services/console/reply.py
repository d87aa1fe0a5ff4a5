"""The reply form: which channels are offered, which are disabled and why, and to whom."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from channels import registry
from schemas import Channel, Identity, IdentityType, Purpose
from services.console import handlog
from services.console.timeline import channel_label
from services.console.window import WindowState
from services.customers.consent import ConsentBook
from services.customers.outbound import default_recipient


@dataclass(frozen=True)
class ChannelOption:
    """One channel of the reply form."""

    channel: Channel
    label: str
    recipient: Identity | None
    disabled_because: str | None
    selected: bool = False
    #: Whether the page announces the agent's typing on it (``ChannelInfo.shows_typing``).
    typing: bool = False
    #: Outside its reply window but open to the channel's templates: the form asks for one.
    template_only: bool = False

    @property
    def enabled(self) -> bool:
        """Whether the agent may send on it."""
        return self.disabled_because is None


def _identity(found: dict[str, Any]) -> Identity:
    return Identity.model_construct(
        type=IdentityType(found["type"]), scope=found.get("scope") or "", value=found["value"]
    )


def recipient(
    channel: Channel, identities: Sequence[dict[str, Any]], replying_to: dict[str, Any] | None
) -> Identity | None:
    """Whom a message on ``channel`` goes to: the replied-to message's sender on the same
    channel, else the customer's first identity of a type the channel delivers to."""
    if replying_to and replying_to["channel"] == channel.value and replying_to["identity"]:
        return _identity(replying_to["identity"])
    return default_recipient(channel, identities)


def options(
    customer_id: uuid.UUID,
    identities: Sequence[dict[str, Any]],
    book: ConsentBook,
    sendable: Iterable[Channel],
    used: Sequence[str],
    preferred: str | None,
    replying_to: dict[str, Any] | None,
    windows: Mapping[Channel, WindowState] | None = None,
) -> list[ChannelOption]:
    """The channels offered: those the hub sends on, the customer used, or prefers.

    Disabled: no service consent, no address for it, no adapter sends on it, or outside its
    reply window (``windows``) where no template may go either. Selected: the replied-to
    message's channel, else the preferred one, else the most recently used one.
    """
    windows = windows or {}
    sendable = set(sendable)
    names = [c.value for c in sendable] + list(used) + ([preferred] if preferred else [])
    offered = [c for c in Channel if c.value in names and c.value != handlog.CHANNEL]
    built = []
    for channel in offered:
        to = recipient(channel, identities, replying_to)
        why = None
        if not book.allows(customer_id, channel, Purpose.SERVICE):
            why = "no consent"
        elif channel not in sendable:
            why = "not connected"
        elif to is None:
            why = "no address"
        window = windows.get(channel)
        if why is None and window is not None:
            why = window.refused
        label = channel_label(channel.value)
        if channel.value == preferred:
            label += " (preferred)"
        template_only = why is None and window is not None and not window.open
        built.append(ChannelOption(channel, label, to, why, template_only=template_only))
    enabled = [o.channel.value for o in built if o.enabled]
    wishes = [replying_to["channel"] if replying_to else None, preferred, *used]
    choice = next((w for w in wishes if w in enabled), None)
    return [
        ChannelOption(
            o.channel,
            o.label,
            o.recipient,
            o.disabled_because,
            o.channel == choice,
            o.enabled and _shows_typing(o.channel),
            o.template_only,
        )
        for o in built
    ]


def _shows_typing(channel: Channel) -> bool:
    info = registry.channel_info(channel)
    return bool(info and info.shows_typing)

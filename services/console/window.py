"""The reply window of channels that take replies only for a while after the customer last
wrote (``ChannelInfo.reply_window``), as agents read it: on the customer page and in the reply
form. The rule is the channel's own (``ReplyWindow``); the time counts from the same last
inbound message the hub attaches to each command (``outbound.last_inbound``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from channels import registry
from schemas import Channel
from services.console.timeline import channel_label
from services.customers import outbound


@dataclass(frozen=True)
class WindowState:
    """Whether an agent's free-form reply may go on a channel now, and what to tell them."""

    channel: Channel
    label: str
    #: An agent's free-form reply may go now.
    open: bool
    #: Closed, but the channel's pre-approved templates may go.
    templates: bool
    #: "Reply window: 3 h 12 min left", "Reply window: closed 2 days ago: …".
    text: str

    @property
    def refused(self) -> str | None:
        """Why the reply form disables the channel (None: it may be used, maybe by template)."""
        if self.open or self.templates:
            return None
        return "outside its reply window"


def duration(delta: timedelta) -> str:
    """A span as agents read it: "3 h 12 min", "2 days 4 h", "less than a minute"."""
    minutes = int(delta.total_seconds() // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        unit = "day" if days == 1 else "days"
        return f"{days} {unit} {hours} h" if hours else f"{days} {unit}"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min" if minutes else "less than a minute"


def state(channel: Channel, last: datetime | None, now: datetime) -> WindowState | None:
    """The window of ``channel`` for a person's reply (the console's are), None if it has none."""
    info = registry.channel_info(channel)
    window = info.reply_window if info else None
    if window is None:
        return None
    label = channel_label(channel.value)
    closed_then = (
        f"{label} templates only, or another channel"
        if window.templates
        else ("another channel only, until the customer writes again")
    )
    if last is None:
        text = f"Reply window: not open, the customer never wrote on {label}: {closed_then}"
        return WindowState(channel, label, False, window.templates, text)
    if window.open(last, now):
        text = f"Reply window: {duration(window.closes(last) - now)} left"
        if window.by_person:
            text += f" (an agent's reply: {duration(window.closes(last, person=True) - now)})"
        return WindowState(channel, label, True, window.templates, text)
    if window.open(last, now, person=True):
        left = duration(window.closes(last, person=True) - now)
        text = (
            f"Reply window: {left} left for an agent's reply"
            f" (automatic replies ended {duration(now - window.closes(last))} ago)"
        )
        return WindowState(channel, label, True, window.templates, text)
    ago = duration(now - window.closes(last, person=True))
    text = f"Reply window: closed {ago} ago: {closed_then}"
    return WindowState(channel, label, False, window.templates, text)


async def states(
    conn: asyncpg.Connection, customer_id: uuid.UUID, now: datetime, channels: Iterable[Channel]
) -> dict[Channel, WindowState]:
    """The windows of those of ``channels`` that have one."""
    found: dict[Channel, WindowState] = {}
    for channel in channels:
        info = registry.channel_info(channel)
        if info is None or info.reply_window is None:
            continue
        last = await outbound.last_inbound(conn, customer_id, channel)
        shown = state(channel, last, now)
        if shown is not None:
            found[channel] = shown
    return found

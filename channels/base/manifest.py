"""A channel folder's declaration: what the hub needs to know about it without importing
anything else of it (the registry finds manifests through the ``omnihub.channels`` entry
points, so a new channel is a folder and one line in ``pyproject.toml``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic_settings import BaseSettings

from channels.base.adapter import ChannelAdapter
from schemas import Channel, IdentityType


@dataclass(frozen=True)
class ReplyWindow:
    """When a channel lets a business answer: for a while after the customer last wrote. One
    rule for the adapter that refuses a late reply and the console that says how long is left."""

    #: Any reply, free-form, this long after the customer's last message.
    free: timedelta
    #: A person's reply (not an automatic one), tagged as such, up to this long; None: no longer.
    by_person: timedelta | None = None
    #: Whether pre-approved templates may go at any time (``template`` command attributes).
    templates: bool = False

    def closes(self, last_inbound: datetime, *, person: bool = False) -> datetime:
        """When replies (a person's, with ``person``) stop being allowed."""
        longest = max(self.free, self.by_person or self.free) if person else self.free
        return last_inbound + longest

    def open(self, last_inbound: datetime | None, now: datetime, *, person: bool = False) -> bool:
        """Whether such a reply may go ``now`` (never before the customer wrote)."""
        return last_inbound is not None and now <= self.closes(last_inbound, person=person)


@dataclass(frozen=True)
class ChannelInfo:
    """What agents and the hub know of one channel an adapter serves."""

    channel: Channel
    #: How the console names it ("SMS", "Phone").
    label: str
    #: A short symbol the console shows beside the label.
    icon: str
    #: Identity types the channel delivers to, by preference; None: any identity.
    recipients: tuple[IdentityType, ...] | None
    #: Whether the channel's messages carry files (``OutboundCommand.attachments``).
    sends_files: bool = False
    #: Whether typing is shown both ways while the customer is connected: the customer's to
    #: agents (``ChannelAdapter.typing``) and an agent's to the customer (the adapter's
    #: ``SessionAdapter.show_typing``); the console then announces its agents' typing.
    shows_typing: bool = False
    #: How long after the customer last wrote replies are allowed (Meta's 24-hour window);
    #: None: at any time. The hub attaches when that was to each command, as the attribute
    #: ``last_inbound_at`` (ISO 8601; absent when the customer never wrote on the channel).
    reply_window: ReplyWindow | None = None


@dataclass(frozen=True)
class Listener:
    """A port a source adapter listens on besides the HTTP port (an SMTP server): deploys
    publish it and set its host setting to listen on every interface."""

    #: The port's name in Kubernetes (``smtp``): 15 characters at most, lower case.
    name: str
    #: The port inside the container.
    port: int
    #: The settings (environment variables) that set the port and the listening address.
    port_setting: str
    host_setting: str


@dataclass(frozen=True)
class Manifest:
    """One channel adapter's registration."""

    #: The adapter's name: ``/channels/<name>/``, ``omnihub run channel <name>``, metrics.
    name: str
    #: One line for people (docs, `omnihub channels`).
    title: str
    #: Builds the adapter from its settings (read from the environment).
    adapter: Callable[[], ChannelAdapter]
    channels: tuple[ChannelInfo, ...]
    #: The settings classes the adapter reads, for generated configuration docs and deploys.
    settings: tuple[type[BaseSettings], ...] = ()
    #: Part of the hub's own API: `omnihub run api` serves it whatever OMNIHUB_CHANNELS says.
    with_hub_api: bool = False
    #: An adapter that needs no process of its own to receive (it only sends).
    send_only: bool = False
    #: Ports its source listens on besides HTTP.
    listeners: tuple[Listener, ...] = ()
    #: A folder of browser files (a chat widget) the web processes serve at
    #: ``/channels/<name>/<file>``: ``widget.js`` under a stable address, cached briefly; a file
    #: may name ``__OMNIHUB_ASSET_VERSION__``, the folder's content hash, to load the others
    #: as ``<file>?v=<version>``, cached for good.
    assets: Path | None = None
    #: Whether the channel is switched on (read from its settings when asked; None: always).
    #: One behind a paid tier of its platform (X's DM webhooks) is off by default: the default
    #: list (``OMNIHUB_CHANNELS`` empty, `omnihub up`) leaves it out; naming it still serves it.
    enabled: Callable[[], bool] | None = None

    def switched_on(self) -> bool:
        """Whether the default list of adapters serves this one (``enabled``)."""
        return self.enabled is None or self.enabled()

    def info(self, channel: Channel) -> ChannelInfo | None:
        """This manifest's knowledge of ``channel``, if it serves it."""
        return next((c for c in self.channels if c.channel is channel), None)

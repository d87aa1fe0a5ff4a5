"""Every registered channel adapter, by name."""

from __future__ import annotations

from channels.api import ApiAdapter
from channels.base import ChannelAdapter
from channels.twilio import TwilioAdapter
from schemas import Channel

ADAPTERS: dict[str, type[ChannelAdapter]] = {
    ApiAdapter.name: ApiAdapter,
    TwilioAdapter.name: TwilioAdapter,
}


def adapter_class(name: str) -> type[ChannelAdapter]:
    """Return the adapter class registered under ``name``; KeyError names the known ones."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise KeyError(f"unknown channel adapter {name!r}; known: {', '.join(ADAPTERS)}") from None


def adapter_for_channel(channel: Channel) -> type[ChannelAdapter]:
    """Return the adapter class that sends on ``channel``."""
    for cls in ADAPTERS.values():
        if channel in cls.channels:
            return cls
    raise KeyError(f"no adapter sends on channel {channel.value!r}")

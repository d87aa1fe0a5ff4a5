"""Every channel adapter installed, found through the ``omnihub.channels`` entry points.

A channel registers itself in ``pyproject.toml``::

    [project.entry-points."omnihub.channels"]
    twilio = "channels.twilio:MANIFEST"

This module never names a channel: ``services/`` asks it instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from importlib.metadata import entry_points

from channels.base.manifest import ChannelInfo, Manifest
from schemas import Channel

GROUP = "omnihub.channels"


@cache
def manifests() -> dict[str, Manifest]:
    """Every registered channel's manifest, by name (sorted)."""
    found: dict[str, Manifest] = {}
    for point in entry_points(group=GROUP):
        manifest = point.load()
        if not isinstance(manifest, Manifest):
            raise TypeError(f"entry point {point.value} is not a channels.base.Manifest")
        if manifest.name != point.name:
            raise ValueError(f"entry point {point.name!r} names manifest {manifest.name!r}")
        found[manifest.name] = manifest
    served: dict[Channel, str] = {}
    for manifest in found.values():
        for info in manifest.channels:
            if info.channel in served:
                raise ValueError(
                    f"channel {info.channel.value} is served by both {served[info.channel]}"
                    f" and {manifest.name}"
                )
            served[info.channel] = manifest.name
    return dict(sorted(found.items()))


def manifest(name: str) -> Manifest:
    """The manifest registered under ``name``; KeyError names the known ones."""
    try:
        return manifests()[name]
    except KeyError:
        known = ", ".join(manifests())
        raise KeyError(f"unknown channel adapter {name!r}; known: {known}") from None


def selected(names: Sequence[str]) -> list[Manifest]:
    """The manifests named; when ``names`` is empty, every one switched on (a channel off by
    default runs only where its setting or a name asks: ``Manifest.enabled``). KeyError for
    an unknown name."""
    if names:
        return [manifest(name) for name in names]
    return [m for m in manifests().values() if m.switched_on()]


def for_channel(channel: Channel) -> Manifest | None:
    """The manifest of the adapter that serves ``channel``, if one is installed."""
    return next((m for m in manifests().values() if m.info(channel)), None)


def channel_info(channel: Channel) -> ChannelInfo | None:
    """What the installed adapter of ``channel`` declares about it."""
    found = for_channel(channel)
    return found.info(channel) if found else None


def icon(channel: str) -> str:
    """The symbol people see beside a channel's name: its adapter's, else none."""
    try:
        info = channel_info(Channel(channel))
    except ValueError:
        info = None
    return info.icon if info else ""


def label(channel: str) -> str:
    """How people see a channel's name: its adapter's label, else the name capitalised."""
    try:
        info = channel_info(Channel(channel))
    except ValueError:
        info = None
    return info.label if info else channel.replace("_", " ").capitalize()

"""The channel adapters a process serves, built from the registry and OMNIHUB_CHANNELS."""

from __future__ import annotations

from collections.abc import Sequence

from channels.base import ChannelAdapter
from channels.registry import manifests, selected


def build_adapters(names: Sequence[str], *, hub_api: bool = True) -> dict[str, ChannelAdapter]:
    """Instantiate the named adapters (every registered one when ``names`` is empty); with
    ``hub_api``, also those that are part of the hub's own API (the API channel's door)."""
    wanted = {m.name: m for m in selected(names)}
    if hub_api:
        wanted.update({m.name: m for m in manifests().values() if m.with_hub_api})
    return {name: wanted[name].adapter() for name in sorted(wanted)}

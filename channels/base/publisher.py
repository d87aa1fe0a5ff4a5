"""What an adapter needs from the bus: publish what it received, durably, before answering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from channels.base.adapter import ChannelEvent, InboundRequest
from schemas import OutboundCommand, StagedInput


class PublishError(Exception):
    """The broker did not acknowledge the records (the caller answers 503 or retries)."""


class Publisher(Protocol):
    """Publishes a channel's events and returns only once the broker acknowledged all."""

    async def publish(self, events: Sequence[ChannelEvent]) -> None:
        """Publish each event on its type's topic (interactions, delivery states) and wait
        for acks=all; raise PublishError when that fails."""
        ...

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        """Publish an authentic request that cannot be parsed, with the reason; wait for acks."""
        ...

    async def stage(self, staged: StagedInput) -> None:
        """Publish an input to be read later by its adapter (``StagingAdapter``), sealed with
        its period's key; wait for acks=all; raise PublishError when that fails."""
        ...

    async def relay(self, command: OutboundCommand) -> None:
        """Hand an outbound command to the processes holding the channel's client sessions
        (see ``SessionAdapter``); wait for acks."""
        ...

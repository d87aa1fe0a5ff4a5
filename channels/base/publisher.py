"""What an adapter needs from the bus: publish interactions, durably, before answering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from channels.base.adapter import InboundRequest
from schemas import Interaction


class PublishError(Exception):
    """The broker did not acknowledge the records (the caller answers 503)."""


class Publisher(Protocol):
    """Publishes interactions and returns only once the broker acknowledged all of them."""

    async def publish(self, interactions: Sequence[Interaction]) -> None:
        """Publish and wait for acks=all; raise PublishError when that fails."""
        ...

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        """Publish an authentic request that cannot be parsed, with the reason; wait for acks."""
        ...

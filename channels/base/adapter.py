"""The typed adapter contract: verify, parse (pure), send, health."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar
from urllib.parse import parse_qsl

from schemas import Channel, DeliveryState, Interaction, OutboundCommand

if TYPE_CHECKING:
    from fastapi import APIRouter

    from channels.base.publisher import Publisher
    from channels.base.webhook import WebhookReply


@dataclass(frozen=True)
class InboundRequest:
    """A provider's HTTP request as received, independent of the web framework."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """Return a header's value, matching its name case-insensitively."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @cached_property
    def form_items(self) -> tuple[tuple[str, str], ...]:
        """The body parsed as application/x-www-form-urlencoded, every pair in order (parsed
        once however many steps read it); UnicodeDecodeError if the body is not UTF-8."""
        return tuple(parse_qsl(self.body.decode("utf-8"), keep_blank_values=True))

    def form(self) -> dict[str, str]:
        """Return the form body as a dict (last value wins)."""
        return dict(self.form_items)


@dataclass(frozen=True)
class SendResult:
    """What the provider said when it took an outbound message."""

    provider_message_id: str
    state: DeliveryState = DeliveryState.SENT
    detail: str = ""


@dataclass(frozen=True)
class Health:
    """An adapter's own view of whether it can work."""

    ok: bool
    detail: str = ""


class ChannelAdapter(ABC):
    """One channel: checks and normalises what arrives, sends what leaves."""

    #: Short name used in URLs (/channels/<name>/...), CLI and metrics.
    name: ClassVar[str]
    #: The channels this adapter can send on.
    channels: ClassVar[frozenset[Channel]]

    @abstractmethod
    def verify(self, request: InboundRequest) -> None:
        """Raise SignatureError unless the request provably comes from the provider."""

    @abstractmethod
    def parse(self, request: InboundRequest) -> list[Interaction]:
        """Turn a verified request into interactions; pure, no I/O; ParseError if it can't."""

    @abstractmethod
    async def send(self, command: OutboundCommand) -> SendResult:
        """Deliver an outbound command to the provider; SendError when refused."""

    @abstractmethod
    async def health(self) -> Health:
        """Report whether the adapter is configured and can reach what it needs."""

    #: Paths under /channels/<name>/ handled by the shared ``receive`` flow alone (verify,
    #: parse, publish, acknowledge): the web process serves them on its fast path, ahead of
    #: the framework's routing. ``router`` still describes them (OpenAPI).
    webhooks: ClassVar[tuple[str, ...]] = ()

    def router(self, publisher: Publisher) -> APIRouter | None:
        """The adapter's webhook routes under /channels/<name>/, or None when it has none."""
        return None

    def acknowledge(self, request: InboundRequest, interactions: list[Interaction]) -> WebhookReply:
        """The provider's answer once the interactions are published (default: empty 200)."""
        from channels.base.webhook import WebhookReply

        return WebhookReply(200, b"")

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release clients the adapter opened (default: nothing)."""

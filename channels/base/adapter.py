"""What every channel adapter is, whatever its shape: it names its channels, sends, reports
health. The shapes (webhook, source, session) live beside this module."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, TypeAlias
from urllib.parse import parse_qsl

from schemas import Channel, DeliveryState, DeliveryStatus, Interaction, OutboundCommand

if TYPE_CHECKING:
    from channels.base.accounts import AccountLinks
    from channels.base.blobs import BlobStore
    from channels.base.conversation import ConversationLog
    from channels.base.presence import Presence
    from channels.base.publisher import Publisher
    from channels.base.state import SourceState
    from channels.base.typing import Typing

#: What a channel hands the hub: interactions, and delivery states of messages the hub sent.
ChannelEvent: TypeAlias = Interaction | DeliveryStatus


@dataclass(frozen=True)
class Caller:
    """Who the framework authenticated for a CLIENT route (the holder of a bearer token).

    ``id`` is stable for the credential (the token id): a client's own message ids are unique
    only within it, so an adapter derives event ids from ``id`` and the client's id.
    ``channels`` are the channels the caller may post interactions as.
    """

    id: str
    name: str = ""
    channels: frozenset[str] = frozenset()

    def may_post_as(self, channel: str) -> bool:
        """Whether the caller was granted ``channel``."""
        return channel in self.channels


@dataclass(frozen=True)
class InboundRequest:
    """A provider's HTTP request as received, independent of the web framework.

    ``caller`` is who the framework authenticated, for CLIENT routes (a route with ``scopes``
    or ``roles``); None for a provider's request, which proves itself by signature in
    ``verify``.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    query: Mapping[str, str] = field(default_factory=dict)
    caller: Caller | None = None

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
    """One channel: what it sends on, how it sends, whether it can work.

    An adapter also takes one or more shapes for what arrives: ``WebhookAdapter`` (HTTP
    requests answered at once), ``SourceAdapter`` (a server or poller the framework starts and
    stops) and ``SessionAdapter`` (long-lived client connections). The framework hands every
    adapter the hub's ``Publisher`` (``attach``) before it receives or sends anything.
    """

    #: Short name used in URLs (/channels/<name>/...), the CLI and metrics; the manifest's.
    name: ClassVar[str]
    #: The channels this adapter receives and sends on.
    channels: ClassVar[frozenset[Channel]]

    _publisher: Publisher | None = None
    _blobs: BlobStore | None = None
    _state: SourceState | None = None
    _log: ConversationLog | None = None
    _typing: Typing | None = None
    _presence: Presence | None = None
    _accounts: AccountLinks | None = None

    def attach(
        self,
        publisher: Publisher,
        *,
        blobs: BlobStore | None = None,
        state: SourceState | None = None,
        log: ConversationLog | None = None,
        typing: Typing | None = None,
        presence: Presence | None = None,
        accounts: AccountLinks | None = None,
    ) -> None:
        """Take the publisher the adapter publishes (and relays) through, the hub's blob
        store for files that arrive with messages, a source's durable state, a session
        channel's conversation log, where its customers' typing is announced, whether agents
        are present to answer and how a signed-in customer reaches their self-service pages
        (None where the process has no database)."""
        self._publisher = publisher
        self._blobs = blobs
        self._state = state
        self._log = log
        self._typing = typing
        self._presence = presence
        self._accounts = accounts

    @property
    def publisher(self) -> Publisher:
        """The attached publisher; RuntimeError before ``attach``."""
        if self._publisher is None:
            raise RuntimeError(f"channel {self.name}: no publisher attached")
        return self._publisher

    @property
    def blobs(self) -> BlobStore:
        """The attached blob store; RuntimeError without one."""
        if self._blobs is None:
            raise RuntimeError(f"channel {self.name}: no blob store attached")
        return self._blobs

    @property
    def state(self) -> SourceState | None:
        """The attached source state, None in a process without a database."""
        return self._state

    @property
    def log(self) -> ConversationLog | None:
        """The attached conversation log, None in a process without a database."""
        return self._log

    @property
    def accounts(self) -> AccountLinks | None:
        """Sign-in tokens for customers' self-service pages, None where unavailable."""
        return self._accounts

    @property
    def presence(self) -> Presence | None:
        """Whether agents are present to answer, None where unknown (no database)."""
        return self._presence

    @property
    def typing(self) -> Typing | None:
        """Where the customers' typing is announced, None where it is off (no database)."""
        return self._typing

    @abstractmethod
    async def send(self, command: OutboundCommand) -> SendResult:
        """Deliver an outbound command to the provider; SendError when refused."""

    @abstractmethod
    async def health(self) -> Health:
        """Report whether the adapter is configured and can reach what it needs."""

    async def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Release clients the adapter opened (default: nothing)."""

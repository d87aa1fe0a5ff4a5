"""The session shape: long-lived client connections (web chat's WebSockets) held by one web
process, where replies must reach whichever process holds the client's connection.

A small complete example, a chat where each connection names its visitor::

    class ChatAdapter(SessionAdapter):
        name = "chat"
        channels = frozenset({Channel.WEBCHAT})
        sessions = (SessionRoute("ws", summary="the chat widget's connection"),)

        async def serve(self, connection: ClientConnection, route: SessionRoute) -> None:
            visitor = connection.query["visitor"]          # check a signed id in real code
            with self.held.holding(visitor, connection):
                while True:
                    text = await connection.receive_text()  # SessionClosed ends the loop
                    await self.publisher.publish([chat_interaction(visitor, text)])
                    await connection.send_text('{"ack": true}')  # after the broker's ack

        async def deliver(self, command: OutboundCommand) -> bool:
            return await self.held.send(command.to.value, command.text or "")

        async def health(self) -> Health: return Health(ok=True)

The dispatcher sends through ``send``, which relays the command through the bus
(``Publisher.relay``); every web process serving the channel reads the relayed commands and
calls ``deliver``, and only the process holding the session finds it there.
"""

from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Protocol

from channels.base.adapter import ChannelAdapter, SendResult
from schemas import DeliveryState, OutboundCommand


class SessionClosed(Exception):
    """The client closed its connection (or it was lost)."""


class ClientConnection(Protocol):
    """One client's connection, independent of the web framework."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    #: The client's address as the web server reports it (behind a proxy: as it forwards).
    peer: str

    async def receive_text(self) -> str:
        """The client's next message; SessionClosed once it has gone."""
        ...

    async def send_text(self, text: str) -> None:
        """Send a message to the client; SessionClosed once it has gone."""
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection."""
        ...


@dataclass(frozen=True)
class SessionRoute:
    """A WebSocket endpoint under ``/channels/<name>/`` (or as it is, starting with ``/``)."""

    path: str
    summary: str = ""

    def full_path(self, channel: str) -> str:
        """The path the endpoint is served at."""
        return self.path if self.path.startswith("/") else f"/channels/{channel}/{self.path}"


class HeldSessions:
    """The connections this process holds, by the key replies are addressed to."""

    def __init__(self) -> None:
        self._held: dict[str, list[ClientConnection]] = {}

    @contextlib.contextmanager
    def holding(self, key: str, connection: ClientConnection) -> Iterator[None]:
        """Hold ``connection`` under ``key`` for the duration of the block."""
        self._held.setdefault(key, []).append(connection)
        try:
            yield
        finally:
            held = self._held.get(key, [])
            if connection in held:
                held.remove(connection)
            if not held:
                self._held.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._held

    async def send(self, key: str, text: str) -> bool:
        """Send ``text`` to every connection held under ``key``; False when there is none."""
        sent = False
        for connection in list(self._held.get(key, ())):
            with contextlib.suppress(SessionClosed):
                await connection.send_text(text)
                sent = True
        return sent


class SessionAdapter(ChannelAdapter):
    """A channel whose clients stay connected; outbound messages reach them through the bus."""

    #: The WebSocket endpoints the framework serves for this adapter.
    sessions: ClassVar[tuple[SessionRoute, ...]]

    _held: HeldSessions | None = None

    @property
    def held(self) -> HeldSessions:
        """The sessions this process holds for the adapter."""
        if self._held is None:
            self._held = HeldSessions()
        return self._held

    @abstractmethod
    async def serve(self, connection: ClientConnection, route: SessionRoute) -> None:
        """Handle one connection until it closes (SessionClosed may end it)."""

    @abstractmethod
    async def deliver(self, command: OutboundCommand) -> bool:
        """Deliver a relayed command to a session this process holds; False when none."""

    def allowed_origin(self, origin: str) -> bool:
        """Whether pages of ``origin`` may use the sessions' fallback transport (Server-Sent
        Events + POST, for networks that block WebSockets) from a browser: the CORS answer.
        ``serve`` still checks each connection's own origin; by default no other origin."""
        return False

    async def show_typing(self, key: str, author: str) -> bool:
        """Show the client held under ``key`` (what ``deliver`` addresses, the recipient
        identity's value) that agent ``author`` is typing; False when this process holds no
        such session. A channel that shows typing (``ChannelInfo.shows_typing``) overrides
        this; by default nothing is shown."""
        return False

    async def send(self, command: OutboundCommand) -> SendResult:
        """Relay the command to the processes holding sessions (acked by the broker)."""
        await self.publisher.relay(command)
        return SendResult(
            provider_message_id=f"relay:{command.command_id}", state=DeliveryState.SENT
        )

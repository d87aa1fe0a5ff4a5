"""The web chat section's load: visitors as the widget speaks to the hub (hello, then messages
each answered by an ack; agents' replies arriving as entry frames), one WebSocket each, all
in the bench's process (services/bench/webchat.py measures with them)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from channels.webchat.visitors import VisitorIds, conversation_of
from schemas.ids import event_id_for

SITE_ID = "bench"
ORIGIN = "https://bench.example"
#: A bench-only secret: the bench reads its visitors' conversations from their ids.
VISITOR_KEY = "bench-webchat-visitor-key-0123456789abcdef"


@dataclass(eq=False)
class Visitor:
    """One widget connection: its conversation, the acks it waits for, the agents' replies it
    got (by command id: how many times, and when first)."""

    socket: ClientConnection
    conversation: str
    waiting: dict[str, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    replies: Counter[str] = field(default_factory=Counter)
    arrived: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    reader: asyncio.Task[None] | None = None

    def provider_id(self, client_id: str) -> str:
        """The provider message id the channel gives the message ``client_id``."""
        return f"{self.conversation}/{client_id}"

    def event_id(self, client_id: str) -> uuid.UUID:
        """The event id the channel derives for the message ``client_id``."""
        return event_id_for("webchat", self.provider_id(client_id))

    async def say(self, text: str) -> tuple[str, dict[str, Any], float]:
        """Send a message and wait for its answer: (client id, the ack or error, seconds)."""
        self.sent += 1
        client_id = f"m{self.sent}"
        answer = asyncio.get_running_loop().create_future()
        self.waiting[client_id] = answer
        began = time.perf_counter()
        body = {"type": "message", "client_id": client_id, "text": text}
        await self.socket.send(json.dumps(body, ensure_ascii=False))
        try:
            found = await answer
        finally:
            self.waiting.pop(client_id, None)
        return client_id, found, time.perf_counter() - began

    async def read(self) -> None:
        """Take every frame until the socket closes: acks and errors to their waiter,
        agents' replies counted."""
        try:
            async for message in self.socket:
                now = time.perf_counter()
                got = json.loads(message)
                kind = got.get("type")
                if kind == "entry" and got["entry"].get("direction") == "outbound":
                    reply = str(got["entry"]["id"])
                    self.replies[reply] += 1
                    self.arrived.setdefault(reply, now)
                elif kind in ("ack", "error") and "client_id" in got:
                    waiter = self.waiting.get(str(got["client_id"]))
                    if waiter is not None and not waiter.done():
                        waiter.set_result(got)
        except WebSocketException:
            pass
        finally:
            for waiter in self.waiting.values():
                if not waiter.done():
                    waiter.set_result({"type": "error", "code": "closed"})

    @property
    def open(self) -> bool:
        """Whether the socket is still open (the hub has not closed it)."""
        return self.reader is not None and not self.reader.done()


class Crowd:
    """The visitors one bench run opens against one web chat process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ids = VisitorIds(VISITOR_KEY.encode())
        self.visitors: list[Visitor] = []
        self.handshakes: list[float] = []
        self.failed: Counter[str] = Counter()

    async def open(self, count: int, at_once: int) -> float:
        """Open ``count`` visitors, ``at_once`` handshakes in flight (a real crowd arrives
        spread out, and the listen backlog is finite); the seconds it took."""
        gate = asyncio.Semaphore(at_once)

        async def one() -> None:
            async with gate:
                began = time.perf_counter()
                try:
                    visitor = await self._hello()
                except (OSError, WebSocketException, TimeoutError, ValueError) as exc:
                    self.failed[type(exc).__name__] += 1
                    return
                self.handshakes.append(time.perf_counter() - began)
                self.visitors.append(visitor)

        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return time.perf_counter() - began

    async def _hello(self) -> Visitor:
        socket = await connect(self.url, origin=ORIGIN, open_timeout=60)  # type: ignore[arg-type]
        try:
            await socket.send(json.dumps({"type": "hello", "site": SITE_ID}))
            async with asyncio.timeout(60):
                welcome = json.loads(await socket.recv())
            if welcome.get("type") != "welcome":
                raise ValueError(f"no welcome: {welcome}")
            visitor = self.ids.visitor(welcome["visitor"], SITE_ID)
            if visitor is None:
                raise ValueError("a visitor id the bench's key does not check")
        except BaseException:
            await socket.close()
            raise
        found = Visitor(socket, conversation_of(SITE_ID, visitor))
        found.reader = asyncio.create_task(found.read())
        return found

    def still_open(self) -> int:
        """Visitors whose socket the hub has not closed."""
        return sum(1 for v in self.visitors if v.open)

    async def close(self) -> None:
        """Close every socket and wait for the readers."""
        await asyncio.gather(*(v.socket.close() for v in self.visitors), return_exceptions=True)
        for visitor in self.visitors:
            if visitor.reader is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(visitor.reader, 10)


def received(visitors: Sequence[Visitor]) -> tuple[Counter[str], dict[str, float]]:
    """Every visitor's replies together: how many times each arrived, and when first."""
    counts: Counter[str] = Counter()
    first: dict[str, float] = {}
    for visitor in visitors:
        counts.update(visitor.replies)
        first.update(visitor.arrived)
    return counts, first

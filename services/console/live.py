"""Live timeline: one LISTEN connection per API process, fanned out to SSE subscribers.

PostgreSQL triggers (migration 0006) announce every new timeline row and delivery state on the
``omnihub_timeline`` channel as ``<customer id>/<event id>`` (a routing decision is written in
its timeline row's transaction, whose notification covers it: migration 0009). The feed
keeps one dedicated connection listening (reconnecting when it drops) and hands each
notification to the queues of the pages showing that customer. A page reconciles with the
server on every notification and on every (re)connection, so nothing is lost in between.

The same connection hears ``omnihub_typing`` (``services/typing.py``): a customer typing is
passed to the pages showing that customer as a ``typing`` event (never stored; lost if the
page is not listening at that moment, which is what a typing hint is worth).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg

from services import typing

log = logging.getLogger(__name__)

CHANNEL = "omnihub_timeline"
QUEUE_SIZE = 100
RESYNC = "resync"
#: What a page's queue receives when its customer is typing (no timeline payload looks so).
TYPING = "typing:visitor"


#: Seconds between reminders while the feed cannot listen.
REMIND = 60.0


class TimelineFeed:
    """Fans ``omnihub_timeline`` notifications out to per-customer subscriber queues."""

    def __init__(self, database_url: str, retry_seconds: float = 1.0) -> None:
        self.database_url = database_url
        self.retry_seconds = retry_seconds
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = {}
        self._task: asyncio.Task[None] | None = None
        self.listening = asyncio.Event()
        #: Other channels heard on the same connection: (channel, on payload, on reconnect).
        self._also: list[tuple[str, Callable[[str], None], Callable[[], None]]] = []

    def also(
        self, channel: str, on_payload: Callable[[str], None], on_listening: Callable[[], None]
    ) -> None:
        """Hear ``channel`` on the feed's connection too; ``on_listening`` runs each time the
        feed (re)starts listening, for what was missed meanwhile. Call before ``start``."""
        self._also.append((channel, on_payload, on_listening))

    async def start(self) -> None:
        """Start listening in the background (reconnecting until stopped)."""
        self._task = asyncio.create_task(self._run(), name="omnihub-timeline-feed")

    async def stop(self) -> None:
        """Stop listening."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        failing_since: float | None = None  # an outage is logged once, then every REMIND s
        reminded = 0.0
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._notified)
                await conn.add_listener(typing.CHANNEL, self._typing)
                for channel, on_payload, on_listening in self._also:
                    await conn.add_listener(channel, _payload_to(on_payload))
                    on_listening()
                self.listening.set()
                if failing_since is not None:
                    log.warning(
                        "timeline feed: listening again after %.0f s",
                        time.monotonic() - failing_since,
                    )
                    failing_since = None
                self._broadcast(RESYNC)  # whatever happened while not listening
                await lost.wait()
                log.warning("timeline feed: listening connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = reminded = now
                    log.warning("timeline feed: cannot listen (%r); retrying", exc)
                elif now - reminded >= REMIND:
                    reminded = now
                    log.warning(
                        "timeline feed: still cannot listen after %.0f s (%r)",
                        now - failing_since,
                        exc,
                    )
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.retry_seconds)

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        customer, _, _ = payload.partition("/")
        for queue in self._subscribers.get(customer, ()):
            self._offer(queue, payload)

    def _typing(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        customer = typing.customer_typing(payload)
        for queue in self._subscribers.get(customer or "", ()):
            self._offer(queue, TYPING)

    def _broadcast(self, message: str) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                self._offer(queue, message)

    @staticmethod
    def _offer(queue: asyncio.Queue[str], message: str) -> None:
        try:
            queue.put_nowait(message)
        except asyncio.QueueFull:  # a slow page: it will reconcile everything at once
            with contextlib.suppress(asyncio.QueueEmpty):
                while True:
                    queue.get_nowait()
            queue.put_nowait(RESYNC)

    @contextlib.asynccontextmanager
    async def subscribe(self, customer_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        """A queue receiving the customer's notifications while the context is open."""
        queue: asyncio.Queue[str] = asyncio.Queue(QUEUE_SIZE)
        self._subscribers.setdefault(customer_id, set()).add(queue)
        try:
            yield queue
        finally:
            subscribers = self._subscribers.get(customer_id, set())
            subscribers.discard(queue)
            if not subscribers:
                self._subscribers.pop(customer_id, None)

    def subscriber_count(self) -> int:
        """Open subscriptions (for tests and metrics)."""
        return sum(len(q) for q in self._subscribers.values())


def _setter(event: asyncio.Event) -> Any:
    """A termination listener that sets ``event``."""

    def lost(_conn: Any) -> None:
        event.set()

    return lost


def sse(event: str, data: str) -> str:
    """One server-sent event (data must be a single line)."""
    return f"event: {event}\ndata: {data}\n\n"


async def stream(
    feed: TimelineFeed, customer_id: str, lifetime: float = 15.0, heartbeat: float = 5.0
) -> AsyncIterator[str]:
    """The SSE body for one page: ``ready``, then ``timeline`` events (and ``typing`` ones
    while the customer types) until ``lifetime``.

    Streams end after ``lifetime`` seconds and the browser's EventSource reconnects (``retry``),
    so a server that stops is never held up by open streams; the page reconciles on ``ready``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + lifetime
    async with feed.subscribe(customer_id) as queue:
        yield "retry: 500\n\n" + sse("ready", customer_id)
        while (left := deadline - loop.time()) > 0:
            try:
                message = await asyncio.wait_for(queue.get(), timeout=min(heartbeat, left))
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield sse("typing", "visitor") if message == TYPING else sse("timeline", message)


def _payload_to(handler: Callable[[str], None]) -> Callable[[Any, int, str, str], None]:
    """An asyncpg listener that hands the notification's payload to ``handler``."""

    def listener(conn: Any, pid: int, channel: str, payload: str) -> None:
        handler(payload)

    return listener

"""Typing indicators between the web processes holding customers' sessions and the consoles,
by PostgreSQL NOTIFY on ``omnihub_typing``: ephemeral (never stored, never on the timeline
nor on the broker), heard by every process listening, whichever one the customer or the
agent is on. No message text is ever in a payload, only who types:

- ``<customer id>/visitor``: the customer is typing. The web process announces it by their
  identity; the statement that notifies resolves it to its customer (nothing is sent for an
  identity no customer has yet). The consoles' live feeds (``services/console/live.py``)
  pass it to the pages showing that customer.
- ``<customer id>/agent/<json>``: an agent is typing to the customer, the JSON being
  ``{"channel", "to": [recipient identity values], "author"}``. The console announces it
  (``POST /console/customers/<id>/typing``); every web process serving the channel shows it
  to the sessions it holds under those values (``SessionAdapter.show_typing``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from channels import registry
from channels.base import SessionAdapter
from channels.base.source import cancel
from schemas import Channel, Identity

log = logging.getLogger(__name__)

CHANNEL = "omnihub_typing"
#: Recipients one announcement names at most (a customer's sessions on one channel).
MAX_RECIPIENTS = 20
MAX_AUTHOR = 100
#: PostgreSQL refuses payloads of 8000 bytes or more.
MAX_PAYLOAD = 7900
#: An announcement waits this long for the database at most (typing is a hint).
ANNOUNCE_SECONDS = 2.0

_CUSTOMER_TYPING = """
SELECT pg_notify($1, customer_id::text || '/visitor') FROM identities
WHERE type = $2 AND scope = $3 AND value = $4
"""
_RECIPIENTS = """
SELECT value FROM identities WHERE customer_id = $1 AND type = ANY($2::text[])
ORDER BY created_at DESC, value LIMIT $3
"""


@dataclass(frozen=True)
class AgentTyping:
    """An agent typing to a customer's sessions on ``channel``."""

    customer: str
    channel: str
    to: tuple[str, ...]
    author: str


def agent_payload(customer_id: uuid.UUID, channel: Channel, to: Sequence[str], author: str) -> str:
    """The notification of an agent typing (recipients dropped to stay under the limit)."""
    keys = list(to[:MAX_RECIPIENTS])
    while True:
        body = {"channel": channel.value, "to": keys, "author": author[:MAX_AUTHOR]}
        payload = f"{customer_id}/agent/" + json.dumps(body, separators=(",", ":"))
        if len(payload.encode()) <= MAX_PAYLOAD or not keys:
            return payload
        keys.pop()


def agent_typing(payload: str) -> AgentTyping | None:
    """The agent's typing ``payload`` announces; None for a customer's, or a malformed one."""
    customer, _, rest = payload.partition("/")
    who, _, body = rest.partition("/")
    if who != "agent":
        return None
    try:
        found: Any = json.loads(body)
        to = found["to"]
        if not (isinstance(to, list) and all(isinstance(k, str) for k in to)):
            return None
        channel, author = found["channel"], found["author"]
        if not isinstance(channel, str) or not isinstance(author, str):
            return None
    except (ValueError, TypeError, KeyError):
        return None
    return AgentTyping(customer, channel, tuple(to), author)


def customer_typing(payload: str) -> str | None:
    """The customer whose typing ``payload`` announces; None for an agent's."""
    customer, _, who = payload.partition("/")
    return customer if who == "visitor" else None


class PgTyping:
    """A web process's :class:`~channels.base.typing.Typing`: a customer's typing announced
    by one statement (identity resolved to customer, and NOTIFY)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def customer_typing(self, identity: Identity) -> None:
        """Announce it; a failing or slow database drops it (logged at debug level)."""
        try:
            async with asyncio.timeout(ANNOUNCE_SECONDS):
                await self._pool.execute(
                    _CUSTOMER_TYPING, CHANNEL, identity.type.value, identity.scope, identity.value
                )
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.debug("typing: not announced: %r", exc)


async def announce_agent(
    conn: asyncpg.Connection, customer_id: uuid.UUID, channel: Channel, author: str
) -> int:
    """Announce that ``author`` is typing to the customer's sessions on ``channel`` (the
    identities of the types it delivers to, newest first); how many were named."""
    info = registry.channel_info(channel)
    if info is None or not info.shows_typing or not info.recipients:
        return 0
    types = [t.value for t in info.recipients]
    rows = await conn.fetch(_RECIPIENTS, customer_id, types, MAX_RECIPIENTS)
    to = [r["value"] for r in rows]
    if to:
        await conn.execute(
            "SELECT pg_notify($1, $2)", CHANNEL, agent_payload(customer_id, channel, to, author)
        )
    return len(to)


class Gate:
    """At most one pass every ``every`` seconds per key (the rest refused); idle keys are
    forgotten oldest first beyond ``max_keys``."""

    def __init__(self, every: float, max_keys: int = 10_000) -> None:
        self.every = every
        self.max_keys = max_keys
        self._last: OrderedDict[tuple[str, ...], float] = OrderedDict()

    def passes(self, *key: str, now: float | None = None) -> bool:
        """Whether ``key`` may pass now (then its time is taken)."""
        now = time.monotonic() if now is None else now
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            return False
        self._last.pop(key, None)
        self._last[key] = now
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True


def shows_typing(adapter: SessionAdapter) -> bool:
    """Whether the adapter declares typing on one of its channels."""
    return any(
        (info := registry.channel_info(channel)) is not None and info.shows_typing
        for channel in adapter.channels
    )


class TypingRelay:
    """Agents' typing reaches the sessions this web process holds: one connection listening
    on ``omnihub_typing`` (reconnecting after a loss) while an adapter shows typing."""

    def __init__(self, adapters: Iterable[SessionAdapter], retry_seconds: float = 1.0) -> None:
        self.adapters = [a for a in adapters if shows_typing(a)]
        self.retry_seconds = retry_seconds
        self.listening = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._showing: set[asyncio.Task[None]] = set()

    async def start(self, database_url: str | None) -> None:
        """Listen in the background; nothing without a database (typing is off then)."""
        if self.adapters and database_url:
            self._task = asyncio.create_task(self._run(database_url), name="typing-relay")

    async def stop(self) -> None:
        """Stop listening."""
        task, self._task = self._task, None
        await cancel(task)
        for showing in list(self._showing):
            await cancel(showing)

    async def _run(self, database_url: str) -> None:
        failing = False
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(database_url, timeout=5)
                lost = asyncio.Event()
                conn.add_termination_listener(functools.partial(_set, lost))
                await conn.add_listener(CHANNEL, self._heard)
                self.listening.set()
                if failing:
                    log.warning("typing relay: listening again")
                    failing = False
                await lost.wait()
                log.warning("typing relay: listening connection lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("typing relay: cannot listen (%r); retrying", exc)
                    failing = True
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await asyncio.shield(conn.close(timeout=2))
            await asyncio.sleep(self.retry_seconds)

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        found = agent_typing(payload)
        if found is None:
            return
        task = asyncio.get_running_loop().create_task(self.show(found))
        self._showing.add(task)
        task.add_done_callback(self._showing.discard)

    async def show(self, typing: AgentTyping) -> None:
        """Show ``typing`` on the sessions this process holds."""
        for adapter in self.adapters:
            if not any(c.value == typing.channel for c in adapter.channels):
                continue
            for key in typing.to:
                try:
                    await adapter.show_typing(key, typing.author)
                except Exception:
                    log.exception("%s: showing typing failed", adapter.name)


def _set(event: asyncio.Event, _conn: Any) -> None:
    """A termination listener's body: the connection is gone."""
    event.set()

"""Relayed commands reach the client sessions this web process holds.

The dispatcher relays a session channel's command on the sessions topic, sealed with its
customer's key; every web process serving such a channel reads all of it (a consumer of its
own, from the end, no group), opens it with the key from PostgreSQL and hands it to its
adapter, which delivers it if it holds the session. A delivered message's state goes to the
delivery topic.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydantic import ValidationError

from channels.base import Publisher, SessionAdapter
from channels.base.source import cancel
from schemas import DeliveryState, DeliveryStatus, OutboundCommand
from schemas.events import utcnow
from schemas.topics import SESSIONS
from services.keys.reader import SealedReader, Unopened
from services.keys.store import Db

log = logging.getLogger(__name__)


class SessionRelay:
    """Reads the sessions topic and delivers to the adapters' held sessions."""

    def __init__(
        self, bootstrap: str, adapters: Iterable[SessionAdapter], publisher: Publisher
    ) -> None:
        self.bootstrap = bootstrap
        self.adapters = list(adapters)
        self.publisher = publisher
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._reader = SealedReader()
        self._db: Db | None = None

    async def start(self, db: Db | None) -> None:
        """Start reading from the end of the topic (earlier commands are on the timeline);
        ``db`` holds the customer keys the commands are sealed with."""
        if not self.adapters:
            return
        if db is None:
            names = ", ".join(a.name for a in self.adapters)
            raise RuntimeError(f"{names} hold client sessions: relayed replies need DATABASE_URL")
        self._db = db
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
        )
        await self._consumer.start()
        partitions = [TopicPartition(SESSIONS.name, p) for p in range(SESSIONS.partitions)]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolved now: a command relayed from here on is read
            await self._consumer.position(partition)
        self._task = asyncio.create_task(self._run(), name="session-relay")

    async def stop(self) -> None:
        """Stop reading."""
        task, self._task = self._task, None
        await cancel(task)
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except asyncio.CancelledError:
                # aiokafka's fetcher raises its own cancellation when the broker is gone;
                # a cancellation of this task itself goes on
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
                log.warning("session relay: its consumer stopped uncleanly (broker gone?)")

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batches = await self._consumer.getmany(timeout_ms=1000)
            # every partition's records at once: one key read and one publish a fetch, not
            # one a partition (docs/performance.md#web-chat)
            records = [record for found in batches.values() for record in found]
            if records:
                await self._handle_until_done(records)

    async def _handle_until_done(self, records: Sequence[Any]) -> None:
        """``handle`` again while PostgreSQL (the keys) cannot be reached."""
        delay = 0.5
        while True:
            try:
                await self.handle(records)
                return
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("sessions: keys unreachable, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def handle(self, records: Sequence[Any]) -> None:
        """Deliver relayed commands where this process holds their sessions, in order; their
        delivered states published together once the batch is delivered (one broker round
        trip a batch, not one a reply: docs/performance.md#web-chat)."""
        assert self._db is not None
        delivered: list[DeliveryStatus] = []
        for opened in await self._reader.open_each(self._db, records):
            if isinstance(opened, Unopened):  # its customer was erased meanwhile, or altered
                log.warning("sessions topic: a command that does not open; skipped")
                continue
            try:
                command = OutboundCommand.model_validate_json(opened)
            except ValidationError:
                log.warning("sessions topic: a record that is not an outbound command; skipped")
                continue
            delivered += await self._deliver(command)
        if delivered:
            await self.publisher.publish(delivered)

    async def _deliver(self, command: OutboundCommand) -> list[DeliveryStatus]:
        """Deliver one command where this process holds its session; its delivered state."""
        states = []
        for adapter in self.adapters:
            if command.channel not in adapter.channels:
                continue
            try:
                delivered = await adapter.deliver(command)
            except Exception:
                log.exception("%s: delivery to a session failed", adapter.name)
                continue
            if delivered:
                states.append(
                    DeliveryStatus(
                        command_id=command.command_id,
                        channel=command.channel,
                        state=DeliveryState.DELIVERED,
                        occurred_at=utcnow(),
                        provider_message_id=f"relay:{command.command_id}",
                    )
                )
        return states

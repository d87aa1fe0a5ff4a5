"""faust's aiokafka transport with a bounded fetch wait and a least fetch size, for omnihub's
workers: every change omnihub makes to faust is here (checked against the versions named in
``services.worker``; ``tests/test_worker_faust.py`` pins what it relies on).

faust hard-codes ``fetch_max_wait_ms=1500`` for its worker consumer, and Tansu does not answer
a waiting fetch early when data arrives, so every hop of the pipeline waited up to 1.5 s
(docs/design-notes.md#servicesworkertransportpy). There is no faust setting for it, so the
app builds its transport from these subclasses, whose consumer thread sets the app's
``fetch_max_wait_ms`` on the aiokafka consumer it creates, and its ``fetch_min_bytes``: a
fetch that finds less waits (up to ``fetch_max_wait_ms``) for more, so a hub under a moderate
load takes its events in fewer, larger batches instead of a few records a fetch.

faust also races the delivery of every fetched message against the flow being suspended (a
rebalance): four futures and an ``asyncio.wait`` a message. ``Consumer`` races each fetched
batch once instead, which costs the worker less CPU an event. It also tells the offsets its
group committed, which faust keeps privately (the consumer lag the worker measures).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import aiokafka
import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as driver
from faust.types import TP, Message

#: The fetch wait when the app does not say (faust's own: 1,500 ms).
FETCH_MAX_WAIT_MS = 50

#: The least a fetch asks for when the app does not say (aiokafka's own: 1 byte).
FETCH_MIN_BYTES = 1

#: Seconds a fetch waits for records while a partition's stream buffer is full (see
#: ``Consumer._wait_next_records``); faust's own is 1 s.
BEHIND_FETCH_WAIT = 0.02

#: Messages handed to the streams between two yields to the event loop (faust's own figure).
YIELD_EVERY = 100


class ConsumerThread(driver.AIOKafkaConsumerThread):
    """The consumer thread, with the fetch wait and the least fetch size the app's settings."""

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = getattr(self.app, "fetch_max_wait_ms", FETCH_MAX_WAIT_MS)
        consumer._fetch_min_bytes = getattr(self.app, "fetch_min_bytes", FETCH_MIN_BYTES)
        return consumer


class Consumer(driver.Consumer):
    """faust's aiokafka consumer, running ``ConsumerThread``, delivering each fetched batch
    under one flow-control race (see ``_drain_messages``), and fetching again as soon as a
    full stream buffer drains (see ``_wait_next_records``)."""

    _drained: asyncio.Event | None = None

    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def committed_offset(self, tp: TP) -> int | None:
        """The offset the worker's group committed for ``tp`` (the next one to read) as faust
        knows it: the group's when the partition was assigned, then each commit's; None when
        the group has none yet (the consumer lag, ``services.worker.metrics``)."""
        committed: int | None = self._committed_offset.get(tp)
        return committed

    def on_buffer_drop(self, tp: TP) -> None:
        """A partition's stream buffer has drained below its low mark: fetch it again, and
        wake a fetch loop waiting for that."""
        super().on_buffer_drop(tp)
        self._buffer_drained().set()

    def _buffer_drained(self) -> asyncio.Event:
        if self._drained is None:
            self._drained = asyncio.Event()
        return self._drained

    async def _wait_next_records(self, timeout: float) -> Any:  # noqa: ASYNC109 (faust's signature)
        """faust's wait for the next fetch, except while a partition's stream buffer is full
        (an agent is behind the fetcher). faust then fetches only the other partitions, for
        up to ``timeout`` (1 s) however soon the buffer drains, or, when every partition's
        buffer is full, sleeps a whole second. Traced on a backlog of 20,000 events: two
        fetches a run came back empty after a whole second, with thousands of events waiting
        (the worker's pipeline ran dry for ~0.5 s once; usually its gathered batches covered
        the wait). Here the wait is ``BEHIND_FETCH_WAIT`` while a buffer is full, and a loop
        with nothing to fetch wakes as soon as a buffer drains (or the consumer stops)."""
        if self._buffered_partitions and self.flow_active:
            drained = self._buffer_drained()
            drained.clear()
            if not (self.app.client_only or self._get_active_partitions()):
                await self.wait_first(drained.wait(), timeout=timeout)
            timeout = min(timeout, BEHIND_FETCH_WAIT)
        return await super()._wait_next_records(timeout)

    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's fetch loop, racing each fetched batch's delivery against the flow being
        suspended (a rebalance) once, where faust races every message: four futures and an
        ``asyncio.wait`` a message."""
        consumer_stopped = self._stopped.is_set
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (consumer_stopped() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany can return at once, again and again
                if not self.should_stop:
                    await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                return
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: AsyncIterator[tuple[TP, Message]]) -> None:
        """Hand one fetch's messages to the streams, as faust does message by message: skip
        what was already read, record offset gaps, commit every ``broker_commit_every``."""
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        async for tp, message in fetched:
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)
            if self._commit_every is not None and self._n_acked >= self._commit_every:
                self._n_acked = 0
                await self.commit()
            await self.callback(message)
            read_offset[tp] = offset


class Transport(driver.Transport):
    """The aiokafka transport with omnihub's consumer."""

    Consumer: ClassVar[type[Any]] = Consumer


class App(faust.App):
    """A faust app whose consumer is omnihub's (see this module); ``fetch_max_wait_ms``
    bounds how long a fetch waits for data, ``fetch_min_bytes`` is how much it waits for."""

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        fetch_min_bytes: int = FETCH_MIN_BYTES,
        **kw: Any,
    ) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_min_bytes = fetch_min_bytes
        super().__init__(*args, **kw)

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)

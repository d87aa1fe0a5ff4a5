"""A batching producer: acks=all, sends many records and waits for every ack once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from channels.base import InboundRequest, PublishError
from schemas import Interaction
from schemas.topics import INTERACTIONS
from services.bus.deadletter import dead_letter
from services.bus.partitioner import partition
from services.bus.records import Record, to_record

log = logging.getLogger(__name__)


class Producer:
    """Owns one AIOKafkaProducer; ``send_all`` returns once the broker acked every record.

    It lingers itself, once for all partitions: aiokafka lingers per partition, so keyed
    records spread over a topic's partitions leave one produce request each (a web process at
    500 requests/s sent 1.3 records a request with ``linger_ms=5``, and Tansu spends ~300 us
    of CPU a request). Here the records of every ``send_all`` made within ``linger_ms`` are
    handed to the client in one go, in call order, and leave together.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        idempotence: bool = False,
        linger_ms: int = 5,
        timeout: float = 10.0,
        client_id: str = "omnihub",
    ) -> None:
        self.timeout = timeout
        self.linger = linger_ms / 1000
        self._config = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "enable_idempotence": idempotence,
            "linger_ms": 0,  # lingering is done here, once for every partition
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": int(timeout * 1000),
            "client_id": client_id,
            "partitioner": partition,
        }
        self._producer: AIOKafkaProducer | None = None
        self._queue: list[tuple[list[Record], asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._handing_over: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect to the cluster (the client is made here, inside the running loop)."""
        producer = AIOKafkaProducer(**self._config)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Send what is queued, flush and disconnect."""
        if self._timer is not None:
            self._timer.cancel()
            self._hand_over()
        if self._handing_over:
            await asyncio.gather(*self._handing_over, return_exceptions=True)
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    @property
    def client(self) -> AIOKafkaProducer:
        """The started aiokafka producer."""
        if self._producer is None:
            raise PublishError("producer not started")
        return self._producer

    async def ping(self) -> None:
        """Refresh cluster metadata; raises when the broker cannot be reached."""
        if not await self.client.client.force_metadata_update():
            raise PublishError("cluster metadata could not be refreshed")

    async def send_all(self, records: Iterable[Record]) -> None:
        """Send every record (lingering with other callers' records, see the class) and wait
        for all acks; PublishError if not."""
        batch = list(records)
        if not batch:
            return
        try:
            async with asyncio.timeout(self.timeout):
                if self.linger > 0:
                    _ = self.client  # not started or stopped: fail now, not after lingering
                    await self._enqueue(batch)
                else:
                    await (await self._append([batch]))[0]
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish failed: %r", exc)
            raise PublishError(f"broker did not acknowledge: {exc!r}") from exc

    def _enqueue(self, batch: list[Record]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((batch, done))
        if self._timer is None:
            self._timer = loop.call_later(self.linger, self._hand_over)
        return done

    def _hand_over(self) -> None:
        """Start handing the queued records to the client (the linger is over)."""
        self._timer = None
        queue, self._queue = self._queue, []
        task = asyncio.ensure_future(self._append_queued(queue))
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)

    async def _append_queued(self, queue: list[tuple[list[Record], asyncio.Future[None]]]) -> None:
        """Append the queued batches (together: they share record batches and produce
        requests), then settle each caller's future once its records are acked. Callers whose
        topics the client knows go first, so a topic whose metadata is still awaited (or never
        comes) holds up only the callers with records for it."""
        live = [(batch, done) for batch, done in queue if not done.done()]  # else: timed out
        known = self.client.client.cluster.partitions_for_topic
        ready = [(b, d) for b, d in live if all(known(t) for t in {r.topic for r in b})]
        for group in (ready, [c for c in live if c not in ready]):
            if not group:
                continue
            try:
                acks = await self._append([batch for batch, _ in group])
            except Exception as exc:  # handed to the callers, whose send_all raises it
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for ack, (_, done) in zip(acks, group, strict=True):
                _settle_on(ack, done)

    async def _append(self, batches: Sequence[list[Record]]) -> list[asyncio.Future[Any]]:
        """Hand the records of ``batches`` (each one caller's) to the client in record batches
        built here, one at a time a partition, records in call order; return the future of each
        caller's acks.

        ``send`` a record at a time cost the client ~21 us of CPU a record (a future, the
        accumulator's bookkeeping and an ack callback each); building the record batches and
        handing them over whole costs ~10 (micro-benchmark, 26,000 records of 1.3 kB in sends
        of 650). Within a partition, batches leave in the order they were handed over, one in
        flight at a time, so each caller's records keep their order.
        """
        producer = self.client
        topics = list(dict.fromkeys(r.topic for batch in batches for r in batch))
        found = await asyncio.gather(
            *(producer.partitions_for(t) for t in topics), return_exceptions=True
        )
        partitions: dict[str, list[int] | BaseException] = {  # a failure fails only its callers
            t: f if isinstance(f, BaseException) else sorted(f)
            for t, f in zip(topics, found, strict=True)
        }
        filling: dict[tuple[str, int], Any] = {}  # the record batch being filled, by partition
        built: list[tuple[str, int, Any]] = []  # every record batch, in the order started
        parts: list[list[Any]] = []  # for each caller: its record batches, or failures
        for batch in batches:
            mine: dict[int, Any] = {}
            for r in batch:
                numbers = partitions[r.topic]
                if isinstance(numbers, BaseException):
                    mine[id(numbers)] = numbers
                    continue
                at = (r.topic, partition(r.key, numbers, numbers))
                builder = filling.get(at)
                if builder is None or not _add(builder, r):  # none yet, or full: the next one
                    builder = filling[at] = producer.create_batch()
                    built.append((*at, builder))
                    _add(builder, r)
                mine[id(builder)] = builder
            parts.append(list(mine.values()))
        sent: dict[int, asyncio.Future[Any]] = {}
        for topic, p, builder in built:
            try:
                sent[id(builder)] = await producer.send_batch(builder, topic, partition=p)
            except Exception as exc:  # the callers with records in it fail
                sent[id(builder)] = _failed(exc)
        return [
            asyncio.gather(
                *(_failed(x) if isinstance(x, BaseException) else sent[id(x)] for x in mine)
            )
            for mine in parts
        ]


def _add(builder: Any, record: Record) -> bool:
    """Append ``record`` to an aiokafka record batch; False when the batch is full (the first
    record always goes in, whatever its size)."""
    added = builder.append(
        timestamp=None, key=record.key, value=record.value, headers=record.headers
    )
    return added is not None


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    """A future already failed with ``exc``."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def _settle_on(acks: asyncio.Future[Any], done: asyncio.Future[None]) -> None:
    """Resolve ``done`` as ``acks`` ends (unless its caller already gave up)."""

    def settle(finished: asyncio.Future[Any]) -> None:
        failure = None if finished.cancelled() else finished.exception()
        if done.done():
            return
        if finished.cancelled():
            done.cancel()
        elif failure is not None:
            done.set_exception(failure)
        else:
            done.set_result(None)

    acks.add_done_callback(settle)


class KafkaPublisher:
    """The adapters' Publisher: interactions onto the interactions topic."""

    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        """Publish the raw request body to the dead-letter topic with the reason in headers."""
        record = dead_letter(
            topic=f"http:{request.method} {request.url}"[:500],
            partition=-1,
            offset=-1,
            key=None,
            value=request.body,
            headers=[("content-type", (request.header("content-type") or "").encode())],
            error=reason,
            stage=stage,
        )
        await self.producer.send_all([record])

    async def publish(self, interactions: Sequence[Interaction]) -> None:
        """Publish interactions and return once the broker acknowledged them all."""
        await self.producer.send_all(
            to_record(INTERACTIONS, i, str(i.event_id), i.source or "omnihub") for i in interactions
        )

"""A batching producer: acks=all, sends many records and waits for every ack once."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from channels.base import ChannelEvent, InboundRequest, PublishError
from schemas import DeliveryStatus, OutboundCommand, StagedInput
from schemas.ids import receipt_id_for
from schemas.topics import DELIVERY, INTERACTIONS, SESSIONS, STAGED
from services import tracing
from services.bus.deadletter import dead_letter
from services.bus.partitioner import partition, partition_of
from services.bus.records import Record, to_record
from services.keys.periods import PeriodKeyring

log = logging.getLogger(__name__)

#: ``services.keys.seal.sealed_for`` bound to a database: records sealed with a customer's key.
CustomerSeal = Callable[[uuid.UUID, Sequence[Record]], Awaitable[list[Record]]]


class Producer:
    """Owns one AIOKafkaProducer; ``send_all`` returns once the broker acked every record.

    It lingers itself, once for all partitions: aiokafka lingers per partition, so keyed
    records spread over a topic's partitions leave one produce request each, and every request
    costs the broker CPU (docs/design-notes.md#servicesbusproducerpy). Here the records of
    every ``send_all`` made within ``linger_ms`` are handed to the client in one go, in call
    order, and leave together; with ``batch_records`` they go as soon as that many are queued,
    so a long linger batches a light load without holding up a heavy one (whose callers wait
    on each other's acks).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        idempotence: bool = False,
        linger_ms: int = 5,
        batch_records: int | None = None,
        timeout: float = 10.0,
        client_id: str = "omnihub",
    ) -> None:
        self.timeout = timeout
        self.linger = linger_ms / 1000
        self.batch_records = batch_records
        self._queued = 0  # records in ``_queue``
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
        for all acks; PublishError if not. Records sent while a web request is served carry
        its trace (``services.tracing``)."""
        batch = list(records)
        if not batch:
            return
        trace = tracing.request_trace()
        if trace is None:
            await self._send_all(batch)
            return
        with tracing.request_publish(batch, trace) as carrying:
            await self._send_all(carrying)

    async def _send_all(self, batch: list[Record]) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                if self.linger > 0:
                    _ = self.client  # not started or stopped: fail now, not after lingering
                    await self._enqueue(batch)
                else:  # a whole batch, lingering for nobody: see _send_whole
                    await self._send_whole(batch)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish failed: %r", exc)
            raise PublishError(f"broker did not acknowledge: {exc!r}") from exc

    def _enqueue(self, batch: list[Record]) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._queue.append((batch, done))
        self._queued += len(batch)
        if self.batch_records is not None and self._queued >= self.batch_records:
            self._hand_over()  # enough to fill a request: the linger would only delay them
        elif self._timer is None:
            self._timer = loop.call_later(self.linger, self._hand_over)
        return done

    def _hand_over(self) -> None:
        """Start handing the queued records to the client (the linger is over, or enough
        records are queued)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._queued = 0
        queue, self._queue = self._queue, []
        task = asyncio.ensure_future(self._append_queued(queue))
        self._handing_over.add(task)
        task.add_done_callback(self._handing_over.discard)

    async def _append_queued(self, queue: list[tuple[list[Record], asyncio.Future[None]]]) -> None:
        """Append every queued batch (without yielding while metadata is known, so they share
        produce requests), then settle each caller's future once its records are acked."""
        for batch, done in queue:
            if done.done():  # the caller gave up (timeout): it was told nothing was sent
                continue
            try:
                acks = await self._append(batch)
            except Exception as exc:  # handed to the caller, whose send_all raises it
                if not done.done():
                    done.set_exception(exc)
                continue
            _settle_on(asyncio.gather(*acks), done)

    async def _append(self, batch: list[Record]) -> list[asyncio.Future[object]]:
        """Append records to the client's batches; the futures of their acks."""
        producer = self.client
        cluster = producer.client.cluster
        return [
            await producer.send(
                r.topic,
                r.value,
                key=r.key,
                headers=r.headers,
                partition=partition_of(r.key, cluster.partitions_for_topic(r.topic)),
            )
            for r in batch
        ]

    async def _send_whole(self, batch: list[Record]) -> None:
        """Hand one caller's records to the client in record batches built here, one a
        partition (another when one fills), and wait for their acks.

        For a producer that does not linger, whose caller hands over a whole batch at a time
        (the processors): cheaper for the client than ``send`` a record at a time (a future,
        the accumulator's bookkeeping and an ack callback each). Lingering callers' records
        still go through ``send``: the accumulator also adds them to batches still waiting
        behind their partition's in-flight one, and the embedded broker's cost grows with the
        number of batches it holds (docs/design-notes.md#servicesbusproducerpy).
        Within a partition the batches leave in order, one in flight at a time.
        """
        producer = self.client
        topics = list(dict.fromkeys(r.topic for r in batch))
        found = await asyncio.gather(*(producer.partitions_for(t) for t in topics))
        partitions = {t: sorted(f) for t, f in zip(topics, found, strict=True)}
        filling: dict[tuple[str, int], Any] = {}  # the record batch being filled, by partition
        built: list[tuple[str, int, Any]] = []
        for r in batch:
            numbers = partitions[r.topic]
            at = (r.topic, partition(r.key, numbers, numbers))
            builder = filling.get(at)
            if builder is None or not _add(builder, r):  # none yet, or full: the next one
                builder = filling[at] = producer.create_batch()
                built.append((*at, builder))
                _add(builder, r)
        await asyncio.gather(*[await producer.send_batch(b, t, partition=p) for t, p, b in built])


def _add(builder: Any, record: Record) -> bool:
    """Append ``record`` to an aiokafka record batch; False when the batch is full (the first
    record always goes in, whatever its size)."""
    added = builder.append(
        timestamp=None, key=record.key, value=record.value, headers=record.headers
    )
    return added is not None


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
    """The adapters' Publisher: each event onto its type's topic, commands to session holders.

    Raw records (interactions, refused requests) are sealed with the period's public key
    (``services.keys.periods``): the hub can read them until the period's key is deleted, the
    adapter that published them never could.
    """

    def __init__(
        self,
        producer: Producer,
        keyring: PeriodKeyring,
        customer_seal: CustomerSeal | None = None,
    ) -> None:
        self.producer = producer
        self.keyring = keyring
        #: Seals a relayed command with its customer's key (the dispatcher's, with a database).
        self.customer_seal = customer_seal
        self._relaying: list[tuple[list[Record], asyncio.Future[None]]] = []
        self._relayer: asyncio.Task[None] | None = None

    async def dead_letter(self, request: InboundRequest, reason: str, stage: str) -> None:
        """Publish the raw request body (sealed) to the dead-letter topic with the reason in
        headers."""
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
        await self.producer.send_all(await self.keyring.sealed([record]))

    async def publish(self, events: Sequence[ChannelEvent]) -> None:
        """Publish interactions (sealed) and delivery states; return once the broker
        acknowledged all."""
        records = [event_record(event) for event in events]
        raw = [r for r in records if r.topic == INTERACTIONS.name]
        plain = [r for r in records if r.topic != INTERACTIONS.name]
        await self.producer.send_all([*await self.keyring.sealed(raw), *plain])

    async def stage(self, staged: StagedInput) -> None:
        """Publish an input its adapter reads later (sealed with the period's key, as raw
        interactions are); return once the broker acknowledged it."""
        record = to_record(STAGED, staged, str(staged.stage_id), f"channels/{staged.adapter}")
        await self.producer.send_all(await self.keyring.sealed([record]))

    async def relay(self, command: OutboundCommand) -> None:
        """Publish a command, sealed with its customer's key, for the processes holding the
        channel's client sessions.

        Relays are sent together: while one send awaits the broker, those that arrive wait and
        go in the next, so a dispatcher's batch of replies costs one produce request, not one
        each (the dispatcher's producer does not linger)."""
        if self.customer_seal is None:
            raise PublishError("relaying needs the customer keys: the dispatcher relays")
        record = to_record(SESSIONS, command, str(command.command_id), "services/dispatcher")
        sealed = await self.customer_seal(command.customer_id, [record])
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._relaying.append((sealed, done))
        if self._relayer is None or self._relayer.done():
            self._relayer = asyncio.create_task(self._relay_all(), name="relay")
        await done

    async def _relay_all(self) -> None:
        while self._relaying:
            batch, self._relaying = self._relaying, []
            try:
                await self.producer.send_all([r for records, _ in batch for r in records])
            except asyncio.CancelledError:
                for _, done in [*batch, *self._relaying]:
                    done.cancel()
                raise
            except Exception as exc:
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)


def event_record(event: ChannelEvent) -> Record:
    """The (plain) record of a channel's event on its topic."""
    if isinstance(event, DeliveryStatus):
        ce_id = receipt_id_for(
            event.channel.value, event.provider_message_id or "", event.state.value
        )
        return to_record(DELIVERY, event, str(ce_id), f"channels/{event.channel.value}")
    return to_record(INTERACTIONS, event, str(event.event_id), event.source or "omnihub")

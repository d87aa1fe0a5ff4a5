"""A batching producer: acks=all, sends many records and waits for every ack once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from channels.base import InboundRequest, PublishError
from schemas import Interaction
from schemas.topics import INTERACTIONS
from services.bus.deadletter import dead_letter
from services.bus.partitioner import partition, partition_of
from services.bus.records import Record, to_record

log = logging.getLogger(__name__)


class Producer:
    """Owns one AIOKafkaProducer; ``send_all`` returns once the broker acked every record."""

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
        self._config = {
            "bootstrap_servers": bootstrap,
            "acks": "all",
            "enable_idempotence": idempotence,
            "linger_ms": linger_ms,
            "max_batch_size": 256 * 1024,
            "request_timeout_ms": int(timeout * 1000),
            "client_id": client_id,
            "partitioner": partition,
        }
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect to the cluster (the client is made here, inside the running loop)."""
        producer = AIOKafkaProducer(**self._config)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        """Flush and disconnect."""
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
        """Send every record (batched by the client) and wait for all acks; PublishError if not."""
        try:
            async with asyncio.timeout(self.timeout):
                producer = self.client
                cluster = producer.client.cluster
                futures = [
                    await producer.send(
                        r.topic,
                        r.value,
                        key=r.key,
                        headers=r.headers,
                        partition=partition_of(r.key, cluster.partitions_for_topic(r.topic)),
                    )
                    for r in records
                ]
                if len(futures) == 1:  # one webhook's record: no gather to build
                    await futures[0]
                elif futures:
                    await asyncio.gather(*futures)
        except (KafkaError, TimeoutError, OSError) as exc:
            log.warning("publish failed: %r", exc)
            raise PublishError(f"broker did not acknowledge: {exc!r}") from exc


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

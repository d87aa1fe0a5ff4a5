"""What a worker's agents share: one PostgreSQL pool, one producer and the published marks."""

from __future__ import annotations

import asyncio

import asyncpg

from services.bus.producer import Producer
from services.config import Settings
from services.db.pool import migrated_pool
from services.identity.rules import load_rules
from services.processors.route import PublishedMarks


class Resources:
    """Opened on first use by any agent, closed when the worker shuts down."""

    def __init__(self, settings: Settings, bootstrap: str, database_url: str) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.database_url = database_url
        self.identity_rules = load_rules(settings.identity_rules)
        self._lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self._producer: Producer | None = None
        self.marks = PublishedMarks()

    async def ready(self) -> tuple[asyncpg.Pool, Producer]:
        """Return the pool and producer, opening them the first time."""
        async with self._lock:
            if self._pool is None:
                self._pool = await migrated_pool(self.database_url, min_size=1, max_size=8)
            if self._producer is None:
                producer = Producer(
                    self.bootstrap,
                    idempotence=self.settings.kafka_idempotence,
                    timeout=self.settings.publish_timeout,
                    client_id="omnihub-processors",
                    # an agent publishes a whole batch in one call and nobody else sends
                    # alongside it: lingering would only delay each batch (5 ms)
                    linger_ms=0,
                )
                await producer.start()
                self._producer = producer
        return self._pool, self._producer

    async def close(self, *args: object, **kwargs: object) -> None:
        """Flush the producer, land the pending published marks and close the pool (a faust
        signal receiver)."""
        await self.marks.flush()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

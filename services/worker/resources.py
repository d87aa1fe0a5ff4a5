"""What a worker's agents share: one PostgreSQL pool, one producer and the period keys."""

from __future__ import annotations

import asyncio

import asyncpg

from channels.base.source import cancel
from services.bus.producer import Producer
from services.config import Settings
from services.db.pool import migrated_pool
from services.keys.periods import PeriodKeeper, PeriodKeyring


class Resources:
    """Opened on first use by any agent, closed when the worker shuts down.

    The producer exists from the start (its client is made when it starts, inside the running
    loop), so what publishes through it, a channel adapter's publisher, can be built with it.
    Like every process with a database, a worker keeps the period keys (``PeriodKeeper``).
    """

    def __init__(
        self, settings: Settings, bootstrap: str, database_url: str, *, client_id: str
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.database_url = database_url
        self._lock = asyncio.Lock()
        self._pool: asyncpg.Pool | None = None
        self.producer = Producer(
            bootstrap,
            idempotence=settings.kafka_idempotence,
            timeout=settings.publish_timeout,
            client_id=client_id,
            # an agent publishes a whole batch in one call and nobody else sends
            # alongside it: lingering would only delay each batch (5 ms)
            linger_ms=0,
        )
        self._started = False
        self.keyring = PeriodKeyring()
        self._keeper = PeriodKeeper(self.keyring, settings.raw_record_days, client_id)
        self._keeping: asyncio.Task[None] | None = None

    async def ready(self) -> tuple[asyncpg.Pool, Producer]:
        """Return the pool and producer, opening them the first time."""
        async with self._lock:
            if self._pool is None:
                self._pool = await migrated_pool(
                    # a worker's steps wait their turn for a connection however long a batch
                    # takes; a request in the web process must not
                    self.database_url,
                    min_size=1,
                    max_size=8,
                    acquire_timeout=None,
                )
            if not self._started:
                await self.producer.start()
                self._started = True
            if self._keeping is None:
                self._keeping = asyncio.create_task(
                    self._keeper.run(self._pool, self.producer.send_all), name="period-keys"
                )
        return self._pool, self.producer

    async def close(self, *args: object, **kwargs: object) -> None:
        """Stop keeping keys, flush and stop the producer and close the pool (a faust signal
        receiver)."""
        keeping, self._keeping = self._keeping, None
        await cancel(keeping)
        if self._started:
            await self.producer.stop()
            self._started = False
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

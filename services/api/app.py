"""Assemble the FastAPI app: lifespan opens the pool and producer; routers mount."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from channels.api import ApiAdapter
from channels.base import ChannelAdapter
from services.api import customers, health, interactions
from services.api.auth import TokenVerifier
from services.api.limits import BodyLimit
from services.api.metrics import RequestMetrics
from services.bus.producer import KafkaPublisher, Producer
from services.config import Settings
from services.db.pool import migrated_pool

MAX_BODY = 1_048_576


def create_app(settings: Settings, bootstrap: str, database_url: str) -> FastAPI:
    """Build the hub's HTTP app against the given broker and database."""
    api_adapter = ApiAdapter()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await migrated_pool(database_url, min_size=2, max_size=10)
        producer = Producer(
            bootstrap,
            idempotence=settings.kafka_idempotence,
            timeout=settings.publish_timeout,
            client_id="omnihub-api",
        )
        await producer.start()
        adapters: dict[str, ChannelAdapter] = {api_adapter.name: api_adapter}
        app.state.pool = pool
        app.state.producer = producer
        app.state.publisher = KafkaPublisher(producer)
        app.state.tokens = TokenVerifier(pool)
        app.state.api_adapter = api_adapter
        app.state.adapters = adapters
        try:
            yield
        finally:
            await producer.stop()
            await api_adapter.close()
            await pool.close()

    app = FastAPI(title="omnihub", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(interactions.router)
    app.include_router(customers.router)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY)
    app.add_middleware(RequestMetrics)
    return app

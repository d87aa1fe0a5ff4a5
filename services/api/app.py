"""Assemble the FastAPI app: lifespan opens the pool and producer; routers mount."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from channels.api import ApiAdapter
from channels.base import ChannelAdapter
from channels.registry import ADAPTERS, adapter_class
from services.api import customers, health, identity, interactions, privacy
from services.api.auth import TokenVerifier
from services.api.interactions import InteractionsFastPath
from services.api.limits import BodyLimit
from services.api.metrics import RequestMetrics
from services.api.webhooks import WebhookFastPath
from services.bus.producer import KafkaPublisher, Producer
from services.config import Settings
from services.console import router as console
from services.db.pool import migrated_pool
from services.identity.rules import load_rules

MAX_BODY = 1_048_576


def build_adapters(names: Sequence[str] | None = None) -> dict[str, ChannelAdapter]:
    """Instantiate the named adapters (default: every registered one) from the environment."""
    return {name: adapter_class(name)() for name in (names or list(ADAPTERS))}


def create_app(
    settings: Settings,
    bootstrap: str,
    database_url: str | None,
    channels: Sequence[str] | None = None,
    core: bool = True,
) -> FastAPI:
    """Build the HTTP app: the hub's API (``core``) and the webhooks of ``channels``.

    ``omnihub run api`` serves everything; ``omnihub run channel <name>`` serves one adapter's
    webhooks alone (it needs only Kafka).
    """
    adapters = build_adapters(channels or settings.channel_list())
    if core and "api" not in adapters:
        adapters["api"] = ApiAdapter()
    producer = Producer(
        bootstrap,
        idempotence=settings.kafka_idempotence,
        timeout=settings.publish_timeout,
        linger_ms=settings.publish_linger_ms,
        batch_records=settings.publish_batch_records,
        client_id="omnihub-http",
    )
    publisher = KafkaPublisher(producer)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = None
        if core:
            if not database_url:
                raise RuntimeError("the hub API needs DATABASE_URL")
            pool = await migrated_pool(database_url, min_size=2, max_size=10)
            app.state.tokens = TokenVerifier(pool)
            app.state.identity_rules = load_rules(settings.identity_rules)
            app.state.console = console.state(settings.public_url, database_url)
            await app.state.console.feed.start()
        await producer.start()
        app.state.pool = pool
        app.state.producer = producer
        app.state.publisher = publisher
        app.state.api_adapter = adapters.get("api")
        app.state.adapters = adapters
        try:
            yield
        finally:
            if core:
                await app.state.console.feed.stop()
            await producer.stop()
            for adapter in adapters.values():
                await adapter.close()
            if pool is not None:
                await pool.close()

    app = FastAPI(title="omnihub", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    if core:
        app.include_router(interactions.router)
        app.include_router(customers.router)
        app.include_router(identity.router)
        app.include_router(privacy.router)
        console.install(app)
    for name, adapter in adapters.items():
        router = adapter.router(publisher)
        if router is not None:
            app.include_router(router, prefix=f"/channels/{name}")
    api = adapters.get("api")
    limit = api.settings.max_body_bytes if isinstance(api, ApiAdapter) else MAX_BODY
    # the last added runs first: metrics, then the fast paths of the API channel's POST and
    # of the webhooks (each with its own body limit), then the body limit and FastAPI for
    # everything else
    app.add_middleware(BodyLimit, max_bytes=max(limit, MAX_BODY))
    app.add_middleware(
        WebhookFastPath, adapters=adapters, publisher=publisher, max_bytes=max(limit, MAX_BODY)
    )
    if core:
        app.add_middleware(InteractionsFastPath, max_bytes=max(limit, MAX_BODY))
    app.add_middleware(RequestMetrics)
    return app

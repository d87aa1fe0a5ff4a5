"""Assemble the web process: the hub's API (FastAPI) and the channels' routes and sources."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI

from channels import registry
from channels.base import (
    ChannelAdapter,
    SessionAdapter,
    SourceAdapter,
    WebhookAdapter,
)
from channels.base.source import cancel
from services.adapters import build_adapters
from services.api import assets, customers, health, identity, keys, openapi, outage, privacy
from services.api.auth import TOKENS_CHANNEL, TokenVerifier
from services.api.channel_routes import ChannelRoutes
from services.api.limits import BodyLimit
from services.api.metrics import RequestMetrics
from services.api.sessions import SessionRelay
from services.api.source_state import PgSourceState
from services.api.sources import SourceSupervisor
from services.blobs import blob_store, close_blob_store
from services.bus.producer import KafkaPublisher, Producer
from services.config import Settings
from services.console import router as console
from services.conversation_log import log_on
from services.db.pool import migrated_pool
from services.identity.rules import load_rules
from services.keys.periods import PeriodKeeper, PeriodKeyFollower, PeriodKeyring
from services.presence import PgPresence
from services.selfservice import mount as selfservice
from services.selfservice.links import PgAccountLinks
from services.typing import PgTyping, TypingRelay

#: The body limit of the hub's own API routes (channel routes have their own).
MAX_BODY = 1_048_576
#: The console's reply form carries the files an agent attaches.
REPLY_FORM = re.compile(r"^/console/customers/[^/]+/reply$")
MAX_REPLY_BODY = 26_214_400


def create_app(
    settings: Settings,
    bootstrap: str,
    database_url: str | None,
    channels: Sequence[str] | None = None,
    core: bool = True,
    adapters: Mapping[str, ChannelAdapter] | None = None,
) -> FastAPI:
    """Build the HTTP app: the hub's API (``core``) and the adapters of ``channels``.

    ``omnihub run api`` serves everything (the adapters OMNIHUB_CHANNELS names, or all);
    ``omnihub run channel <name>`` serves one adapter alone (it needs only Kafka). Tests may
    hand ``adapters`` built already.
    """
    if adapters is None:
        names = channels if channels is not None else settings.channel_list()
        adapters = build_adapters(names, hub_api=core)
    adapters = dict(adapters)
    if not core:
        hub_only = [n for n, a in adapters.items() if _needs_tokens(a)]
        if hub_only:
            raise ValueError(f"{', '.join(hub_only)}: served by `omnihub run api` (needs tokens)")
    producer = Producer(
        bootstrap,
        idempotence=settings.kafka_idempotence,
        timeout=settings.publish_timeout,
        linger_ms=settings.publish_linger_ms,
        batch_records=settings.publish_batch_records,
        client_id="omnihub-http",
    )
    keyring = PeriodKeyring()  # the public keys the adapters seal raw records with
    publisher = KafkaPublisher(producer, keyring)
    blobs = blob_store(settings)
    for adapter in adapters.values():
        adapter.attach(publisher, blobs=blobs)
    sources = SourceSupervisor(a for a in adapters.values() if isinstance(a, SourceAdapter))
    relay = SessionRelay(
        bootstrap, (a for a in adapters.values() if isinstance(a, SessionAdapter)), publisher
    )
    typing = TypingRelay(a for a in adapters.values() if isinstance(a, SessionAdapter))

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
            # a revoked token is refused at once, not when its cached answer expires
            app.state.console.feed.also(
                TOKENS_CHANNEL, app.state.tokens.forget, app.state.tokens.clear
            )
            await app.state.console.feed.start()
        await producer.start()
        # the hub keeps the period keys; a channel process alone learns them from Kafka
        keys: PeriodKeyFollower | None = None
        keeping: asyncio.Task[None] | None = None
        if pool is not None:
            keeper = PeriodKeeper(keyring, settings.raw_record_days, "services/api")
            keeping = asyncio.create_task(keeper.run(pool, producer.send_all))
        else:
            keys = PeriodKeyFollower(bootstrap, keyring)
            await keys.start()
        # a channel process alone still reads customer keys (client sessions) and keeps its
        # sources' place (an IMAP folder's last UID) in the database, where there is one
        side_pool = None
        if pool is None and database_url and (relay.adapters or sources.sources):
            side_pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
        state_pool = pool or side_pool
        if state_pool is not None:
            for adapter in adapters.values():
                adapter.attach(
                    publisher,
                    blobs=blobs,
                    state=PgSourceState(state_pool, adapter.name),
                    log=log_on(state_pool, adapter.name),
                    typing=PgTyping(state_pool),
                    presence=PgPresence(state_pool),
                    accounts=PgAccountLinks(state_pool),
                )
        app.state.pool = pool
        app.state.producer = producer
        app.state.publisher = publisher
        app.state.adapters = adapters
        app.state.blobs = blobs
        app.state.sources = sources
        await relay.start(state_pool)
        # typing both ways needs the database's NOTIFY: off in a process without one
        await typing.start(database_url if state_pool is not None else None)
        await sources.start()
        try:
            yield
        finally:
            await sources.stop()
            await typing.stop()
            await relay.stop()
            await cancel(keeping)
            if keys is not None:
                await keys.stop()
            if core:
                await app.state.console.feed.stop()
            await producer.stop()
            for adapter in adapters.values():
                await adapter.close()
            await close_blob_store(blobs)
            for opened in (pool, side_pool):
                if opened is not None:
                    await opened.close()

    # the OpenAPI document and its pages only when OMNIHUB_API_DOCS says (off in production)
    docs = settings.api_docs
    app = FastAPI(
        title="omnihub",
        version="0.1.0",
        lifespan=lifespan,
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    app.include_router(health.router)
    if core:
        app.include_router(customers.router)
        app.include_router(identity.router)
        app.include_router(privacy.router)
        app.include_router(keys.router)
        console.install(app)
        selfservice.install(app)
        app.state.links_base = selfservice.links_base(settings.public_url, settings.http_port)
        outage.install(app, pages={"/console": console.unavailable, "/me": selfservice.unavailable})
    openapi.install(app, adapters)
    assets.install(app, (registry.manifest(name) for name in adapters))
    # the last added runs first: metrics, then the channels' routes (each with its own body
    # limit), then the body limit and FastAPI for everything else
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY, wider=((REPLY_FORM, MAX_REPLY_BODY),))
    app.add_middleware(ChannelRoutes, adapters=adapters, publisher=publisher)
    app.add_middleware(RequestMetrics)
    return app


def _needs_tokens(adapter: ChannelAdapter) -> bool:
    return isinstance(adapter, WebhookAdapter) and any(r.scopes for r in adapter.routes)

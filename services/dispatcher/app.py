"""The dispatcher's faust app: outbound commands in, delivery states and timeline entries out.

It serves the adapters OMNIHUB_CHANNELS names (every installed one when it is empty) and those
that are part of the hub's API; a command for a channel none of them sends on is refused
(``no_adapter``). Each adapter is attached to a publisher over the dispatcher's producer:
session adapters (web chat) send by relaying the command through it to the web processes
holding their clients' connections.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import asyncpg
import faust

from channels.base import BlobStore, ChannelAdapter
from schemas import DeliveryState, OutboundCommand
from schemas.cloudevents import Trace
from schemas.topics import DELIVERY, INTERACTIONS, OUTBOUND
from services import tracing
from services.adapters import build_adapters
from services.blobs import blob_store, close_blob_store
from services.bus.producer import KafkaPublisher
from services.bus.records import Record, to_record
from services.config import Settings
from services.conversation_log import PgConversationLog
from services.dispatcher import unseen
from services.dispatcher.send import Outcome, dispatch_all
from services.keys.reader import SealedReader
from services.keys.seal import SHARED, sealed_for
from services.worker.app import faust_app, raw_topic
from services.worker.batches import handle_durably
from services.worker.decode import decode_batch
from services.worker.metrics import watch_lag
from services.worker.resources import Resources

APP_ID = "omnihub-dispatcher"
#: A relayed reply in one of these states may still go unseen (services/dispatcher/unseen.py).
_REACHED = (DeliveryState.SENT, DeliveryState.DELIVERED)
#: Seconds between looks for unseen replies that are due.
UNSEEN_EVERY = 5.0
SOURCE = "services/dispatcher"
log = logging.getLogger(__name__)


async def dispatch_batch(
    resources: Resources,
    adapters: Mapping[str, ChannelAdapter],
    reader: SealedReader,
    events: Sequence[Any],
    unseen_after: float = 0.0,
) -> None:
    """Send the batch's commands (``dispatch_all``: one customer's in order, different
    customers' concurrently); publish their states and timeline rows (carrying each
    command's trace, see ``sent_traced``)."""
    pool, producer = await resources.ready()
    opened = await reader.open_each(pool, [event.message for event in events])
    decoded = decode_batch(events, OutboundCommand, stage="dispatch", values=opened)
    # relays to session holders are sealed with their customers' keys: fetched at once
    sessions = unseen.session_channels(adapters)
    relaying = {c.customer_id for c in decoded.models if c.channel in sessions}
    if relaying:
        await SHARED.for_customers(pool, relaying)
    sent = await sent_traced(pool, adapters, decoded.models, decoded.traces)
    records: list[Record] = list(decoded.dead)
    interactions: list[Record] = []
    for outcome, trace in sent:
        interaction, status = outcome.interaction, outcome.status
        interactions.append(
            to_record(INTERACTIONS, interaction, str(interaction.event_id), SOURCE, trace)
        )
        records.append(to_record(DELIVERY, status, str(status.command_id), SOURCE, trace))
    # what was sent is a raw interaction like any other: sealed with the period's key
    await producer.send_all([*await resources.keyring.sealed(interactions), *records])
    if unseen_after > 0:
        relayed = [
            (o.status.command_id, o.interaction.customer_id, o.status.channel)
            for o, _ in sent
            if o.status.channel in sessions and o.status.state in _REACHED
        ]
        await unseen.record(pool, relayed, unseen_after)


async def sent_traced(
    pool: Any,
    adapters: Mapping[str, ChannelAdapter],
    commands: Sequence[OutboundCommand],
    traces: Sequence[Trace],
) -> list[tuple[Outcome, Trace]]:
    """``dispatch_all`` the commands, and the trace each outcome's records carry: tracing
    off, its own record's ``trace`` as it came; on, the context of an
    ``omnihub.dispatch.send`` span (the batch's claim, the command's consent check and send,
    the batch's record; a child of ``trace``)."""
    if not tracing.enabled():
        return list(zip(await dispatch_all(pool, adapters, commands), traces, strict=True))
    spans = [
        tracing.start(
            tracing.DISPATCH,
            trace,
            kind="CLIENT",
            attributes={
                "omnihub.command_id": str(command.command_id),
                "omnihub.customer_id": str(command.customer_id),
                "omnihub.channel": command.channel.value,
            },
        )
        for command, trace in zip(commands, traces, strict=True)
    ]
    try:
        outcomes = await dispatch_all(pool, adapters, commands)
    except BaseException as exc:
        for span in spans:
            tracing.failed(span, exc)
            span.end()
        raise
    for span, outcome in zip(spans, outcomes, strict=True):
        span.set_attribute("omnihub.state", outcome.status.state.value)
        if outcome.status.error_code:
            span.set_attribute("omnihub.error_code", outcome.status.error_code)
        span.end()
    return [(o, tracing.carried_by(s)) for o, s in zip(outcomes, spans, strict=True)]


def served_adapters(
    settings: Settings, resources: Resources, blobs: BlobStore
) -> dict[str, ChannelAdapter]:
    """The adapters OMNIHUB_CHANNELS names (and the hub API's), each attached to a publisher
    over the dispatcher's producer and to ``blobs``, the files outbound messages carry."""
    adapters = build_adapters(settings.channel_list(), hub_api=True)

    async def customer_seal(customer_id: uuid.UUID, records: Sequence[Record]) -> list[Record]:
        pool, _ = await resources.ready()
        return await sealed_for(pool, customer_id, records)

    publisher = KafkaPublisher(resources.producer, resources.keyring, customer_seal)

    async def pool() -> asyncpg.Pool:
        return (await resources.ready())[0]

    for adapter in adapters.values():
        adapter.attach(publisher, blobs=blobs, log=PgConversationLog(pool, adapter.name))
    log.info("dispatcher serves the adapters %s", ", ".join(adapters))
    return adapters


def create_app(settings: Settings, bootstrap: str, database_url: str) -> faust.App:
    """Build the dispatcher's faust app."""
    app = faust_app(APP_ID, settings, bootstrap)
    resources = Resources(settings, bootstrap, database_url, client_id=APP_ID)
    blobs = blob_store(settings)  # closed at shutdown (an S3 store's client)
    adapters = served_adapters(settings, resources, blobs)
    reader = SealedReader()  # opens the commands, sealed with their customers' keys

    async def dispatcher(stream: Any) -> None:
        async for events in stream.take_events(100, within=settings.batch_wait):
            await handle_durably(
                lambda r, batch: dispatch_batch(
                    r, adapters, reader, batch, settings.unseen_reply_seconds
                ),
                resources,
                events,
                "dispatch",
            )

    async def close(*args: object, **kwargs: object) -> None:
        for adapter in adapters.values():
            try:
                await adapter.close()
            except Exception:
                log.exception("closing adapter %s failed", adapter.name)
        await close_blob_store(blobs)
        await resources.close()

    served = {c for a in adapters.values() for c in a.channels}

    async def send_unseen() -> None:
        if settings.unseen_reply_seconds <= 0:
            return
        pool, producer = await resources.ready()
        try:
            await unseen.send_due(pool, producer, served, settings.unseen_reply_seconds)
        except (OSError, asyncpg.PostgresError):
            log.warning("unseen replies: the database is unavailable; trying again later")

    app.agent(raw_topic(app, OUTBOUND.name), name="omnihub.dispatch", concurrency=1)(dispatcher)
    app.timer(UNSEEN_EVERY, name="omnihub.dispatch.unseen")(send_unseen)
    watch_lag(app)
    app.on_before_shutdown.connect(close, weak=False)
    return app

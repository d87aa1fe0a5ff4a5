"""The dispatcher's faust app: outbound commands in, delivery states and timeline entries out.

It serves the adapters OMNIHUB_CHANNELS names (every installed one when it is empty) and those
that are part of the hub's API; a command for a channel none of them sends on is refused
(``no_adapter``). Each adapter is attached to a publisher over the dispatcher's producer:
session adapters (web chat) send by relaying the command through it to the web processes
holding their clients' connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import faust

from channels.base import ChannelAdapter
from schemas import OutboundCommand
from schemas.topics import DELIVERY, INTERACTIONS, OUTBOUND
from services.adapters import build_adapters
from services.bus.producer import KafkaPublisher
from services.bus.records import Record, to_record
from services.config import Settings
from services.dispatcher.send import dispatch
from services.worker.app import faust_app, raw_topic
from services.worker.batches import handle_durably
from services.worker.decode import decode_batch
from services.worker.resources import Resources

APP_ID = "omnihub-dispatcher"
SOURCE = "services/dispatcher"
log = logging.getLogger(__name__)


async def dispatch_batch(
    resources: Resources, adapters: Mapping[str, ChannelAdapter], events: Sequence[Any]
) -> None:
    """Send every command of the batch concurrently; publish their states and timeline rows."""
    pool, producer = await resources.ready()
    decoded = decode_batch(events, OutboundCommand, stage="dispatch")
    outcomes = await asyncio.gather(*(dispatch(pool, adapters, c) for c in decoded.models))
    records: list[Record] = list(decoded.dead)
    for outcome in outcomes:
        records.append(
            to_record(INTERACTIONS, outcome.interaction, str(outcome.interaction.event_id), SOURCE)
        )
        records.append(to_record(DELIVERY, outcome.status, str(outcome.status.command_id), SOURCE))
    await producer.send_all(records)


def served_adapters(settings: Settings, resources: Resources) -> dict[str, ChannelAdapter]:
    """The adapters OMNIHUB_CHANNELS names (and the hub API's), each attached to a publisher
    over the dispatcher's producer."""
    adapters = build_adapters(settings.channel_list(), hub_api=True)
    publisher = KafkaPublisher(resources.producer)
    for adapter in adapters.values():
        adapter.attach(publisher)
    log.info("dispatcher serves the adapters %s", ", ".join(adapters))
    return adapters


def create_app(settings: Settings, bootstrap: str, database_url: str) -> faust.App:
    """Build the dispatcher's faust app."""
    app = faust_app(APP_ID, settings, bootstrap)
    resources = Resources(settings, bootstrap, database_url, client_id=APP_ID)
    adapters = served_adapters(settings, resources)

    async def dispatcher(stream: Any) -> None:
        async for events in stream.take_events(100, within=settings.batch_wait):
            await handle_durably(
                lambda r, batch: dispatch_batch(r, adapters, batch), resources, events, "dispatch"
            )

    async def close(*args: object, **kwargs: object) -> None:
        for adapter in adapters.values():
            try:
                await adapter.close()
            except Exception:
                log.exception("closing adapter %s failed", adapter.name)
        await resources.close()

    app.agent(raw_topic(app, OUTBOUND.name), name="omnihub.dispatch", concurrency=1)(dispatcher)
    app.on_before_shutdown.connect(close, weak=False)
    return app

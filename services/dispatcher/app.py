"""The dispatcher's faust app: outbound commands in, delivery states and timeline entries out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import faust

from channels.base import ChannelAdapter
from schemas import OutboundCommand
from schemas.topics import DELIVERY, INTERACTIONS, OUTBOUND
from services.api.app import build_adapters
from services.bus.records import Record, to_record
from services.config import Settings
from services.dispatcher.send import dispatch
from services.processors.agents import raw_topic
from services.processors.batches import handle_durably
from services.processors.decode import decode_batch
from services.processors.resources import Resources
from services.streams import faust_app

APP_ID = "omnihub-dispatcher"
SOURCE = "services/dispatcher"
log = logging.getLogger(__name__)


async def dispatch_batch(
    resources: Resources, adapters: dict[str, ChannelAdapter], events: Sequence[Any]
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


def create_app(settings: Settings, bootstrap: str, database_url: str) -> faust.App:
    """Build the dispatcher's faust app."""
    app = faust_app(APP_ID, settings, bootstrap)
    resources = Resources(settings, bootstrap, database_url)
    adapters = build_adapters()

    async def dispatcher(stream: Any) -> None:
        async for events in stream.take_events(100, within=settings.batch_wait):
            await handle_durably(
                lambda r, batch: dispatch_batch(r, adapters, batch), resources, events, "dispatch"
            )

    app.agent(raw_topic(app, OUTBOUND.name), name="omnihub.dispatch", concurrency=1)(dispatcher)
    app.on_before_shutdown.connect(resources.close)
    return app

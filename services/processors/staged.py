"""The stage agent: what an adapter staged to answer its sender at once (``StagingAdapter``,
e.g. the SMTP server's messages) is handed back to that adapter, and the events it makes are
published as the adapter would have published them; unusable inputs are dead-lettered."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from channels.base import BlobMissing, BlobStore, ChannelEvent, StagingAdapter
from channels.registry import manifests
from schemas import StagedInput
from services.blobs import blob_store, close_blob_store
from services.bus.producer import KafkaPublisher
from services.bus.records import Record
from services.config import Settings
from services.keys.periods import PeriodKeyring
from services.worker import metrics as worker_metrics
from services.worker.decode import dead_letter_of, decode_batch

if TYPE_CHECKING:
    from services.processors.shared import ProcessorResources

log = logging.getLogger(__name__)

STAGE = "stage"


class Stagers:
    """The registered adapters that stage, each built the first time one of its inputs is
    read, attached to the processors' publisher and the hub's blob store."""

    def __init__(self, settings: Settings, publisher: KafkaPublisher) -> None:
        self.settings = settings
        self.publisher = publisher
        self._blobs: BlobStore | None = None
        self._adapters: dict[str, StagingAdapter | None] = {}

    @property
    def blobs(self) -> BlobStore:
        """The hub's blob store (opened on first use)."""
        if self._blobs is None:
            self._blobs = blob_store(self.settings)
        return self._blobs

    async def in_place(self, staged: StagedInput) -> StagedInput | None:
        """``staged`` with its payload, fetched when it waited in the blob store; None when
        that is gone: an earlier attempt read it, published its events and deleted it."""
        if staged.blob is None:
            return staged
        try:
            payload = await self.blobs.get(staged.blob)
        except BlobMissing:
            log.info("staged input %s was read before (its payload is gone)", staged.stage_id)
            return None
        return staged.model_copy(update={"payload": payload, "blob": None})

    def get(self, name: str) -> StagingAdapter | None:
        """The adapter called ``name`` if it is registered and stages; None otherwise."""
        if name not in self._adapters:
            manifest = manifests().get(name)
            adapter = manifest.adapter() if manifest is not None else None
            if isinstance(adapter, StagingAdapter):
                adapter.attach(self.publisher, blobs=self.blobs)
                self._adapters[name] = adapter
            else:
                self._adapters[name] = None
        return self._adapters[name]

    async def close(self) -> None:
        """Close the adapters built and the blob store's client."""
        for adapter in self._adapters.values():
            if adapter is not None:
                try:
                    await adapter.close()
                except Exception:
                    log.exception("closing adapter %s failed", adapter.name)
        if self._blobs is not None:
            await close_blob_store(self._blobs)


async def unstage(
    stagers: Stagers, events: Sequence[Any], values: Sequence[Any]
) -> tuple[list[ChannelEvent], list[Record], list[StagedInput]]:
    """The events the staged ``events`` make (their opened ``values``), each adapter's inputs
    handed to it in their order; the dead letters of what did not open, validate or name a
    staging adapter; and the inputs whose payloads wait in the blob store, to delete once
    their events are published."""
    dead: list[Record] = []
    stored: list[StagedInput] = []
    inputs: dict[str, list[StagedInput]] = {}
    for event, value in zip(events, values, strict=True):
        decoded = decode_batch([event], StagedInput, stage=STAGE, values=[value])
        dead += decoded.dead
        for staged in decoded.models:
            if stagers.get(staged.adapter) is None:
                reason = f"no staging adapter named {staged.adapter!r} is installed"
                dead.append(dead_letter_of(event.message, reason, STAGE))
                continue
            if staged.blob is not None:
                stored.append(staged)
            found = await stagers.in_place(staged)
            if found is not None:
                inputs.setdefault(staged.adapter, []).append(found)
    made: list[ChannelEvent] = []
    for name, batch in inputs.items():
        adapter = stagers.get(name)
        assert adapter is not None
        made += await adapter.unstage(batch)
    return made, dead, stored


def stage_step(
    stagers: Stagers,
) -> Callable[[ProcessorResources, Sequence[Any]], Awaitable[None]]:
    """The stage agent's one step: open, hand back, publish the events and the dead letters
    before the batch's offsets may be committed, then delete the payloads read from the blob
    store (a retry reads the inputs again: their events keep their ids, their files their
    names)."""

    async def step(resources: ProcessorResources, events: Sequence[Any]) -> None:
        pool, producer = await resources.ready()
        values = await resources.reader.open_each(pool, [event.message for event in events])
        made, dead, stored = await unstage(stagers, events, values)
        if made:
            await stagers.publisher.publish(made)
        if dead:
            await producer.send_all(dead)
        for staged in stored:
            await stagers.blobs.delete_event(staged.stage_id)
        worker_metrics.PROCESSED.labels(STAGE).inc(len(events) - len(dead))
        worker_metrics.DEAD_LETTERS.labels(STAGE).inc(len(dead))

    return step


def stagers_for(settings: Settings, producer: Any, keyring: PeriodKeyring) -> Stagers:
    """The processors' stagers, publishing over the worker's producer."""
    return Stagers(settings, KafkaPublisher(producer, keyring))

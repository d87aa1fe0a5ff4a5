"""Acknowledge fast, work later: an adapter whose sender waits on it (an SMTP client holding
its connection open) publishes what arrived as it came (``Publisher.stage``), answers once the
broker acknowledged it, and reads it later, when the processors hand it back (``unstage``).

A small complete example, a server that stages each message and reads it in the processors::

    class PagerAdapter(SourceAdapter, StagingAdapter):
        async def on_message(self, raw: bytes, sender: str) -> None:
            staged = StagedInput(adapter=self.name, via="pager", order_key=sender, payload=raw)
            await stage(self.publisher, self.blobs, staged)  # PublishError, OSError: retry

        async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
            return [to_interaction(i.payload, received_at=i.received_at) for i in inputs]

``unstage`` runs in the processors (a process with a database: staged inputs are sealed with
their period's key, which the channel's own process cannot open), attached to their
publisher and blob store, with the same configuration as the channel's process.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from channels.base.adapter import ChannelAdapter, ChannelEvent
from channels.base.blobs import BlobStore, blob_id
from channels.base.publisher import Publisher
from schemas import StagedInput

#: Larger payloads wait in the blob store, the record naming them: a broker's largest record
#: is 1 MB by default (Apache Kafka's message.max.bytes), and base64 adds a third.
INLINE_BYTES = 512 * 1024


async def stage(publisher: Publisher, blobs: BlobStore, staged: StagedInput) -> None:
    """Publish ``staged``, its payload moved to the blob store first when too large for a
    record; PublishError or OSError when the broker or the store did not take it."""
    if len(staged.payload) > INLINE_BYTES:
        blob = blob_id(staged.stage_id, 0)
        await blobs.put(blob, staged.payload)
        staged = staged.model_copy(update={"payload": b"", "blob": blob})
    await publisher.stage(staged)


class StagingAdapter(ChannelAdapter):
    """A channel that stages what it receives and turns it into events later."""

    @abstractmethod
    async def unstage(self, inputs: Sequence[StagedInput]) -> list[ChannelEvent]:
        """The events of ``inputs`` (this adapter's, in their order, payloads in place), files
        stored. What can
        be no event is the adapter's to dead-letter with its reason (``publisher``), never to
        raise; PublishError or OSError when something it needs failed: the processors retry
        the whole batch, so this must be idempotent (it is, with ids derived from the input)."""

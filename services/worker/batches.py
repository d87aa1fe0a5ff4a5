"""Run a batch handler so that a batch is acked only once it is durably handled.

faust's ``take_events`` acks a batch when the loop body ends, even when it ends with an
exception, so a handler must never raise out of the loop:
- transient failures (PostgreSQL or the broker unreachable, a deadlock with another worker's
  batch) are retried with backoff, forever:
  the partition waits rather than skipping events;
- any other failure (a poison event the database refuses, a bug) isolates the batch event by
  event, and the events that still fail go to the dead-letter topic with the error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg

from channels.base import PublishError
from services.db.outage import UNAVAILABLE
from services.worker import metrics
from services.worker.decode import dead_letter_of
from services.worker.resources import Resources

log = logging.getLogger(__name__)

#: The resources a worker's handlers take (``Resources`` or a worker's own subclass).
R = TypeVar("R", bound=Resources)
#: A batch handler: the worker's resources and the batch's raw events.
Handler = Callable[[R, Sequence[Any]], Awaitable[None]]
T = TypeVar("T")

TRANSIENT = (
    *UNAVAILABLE,  # PostgreSQL unreachable, shutting down, starting, out of connections
    OSError,
    asyncio.TimeoutError,
    PublishError,
    asyncpg.InterfaceError,
    # two workers' batches locking the same customers: PostgreSQL aborts one, which retries
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
MAX_BACKOFF = 10.0


async def until_done(action: Callable[[], Awaitable[T]], stage: str) -> T:
    """Run ``action``, retrying transient failures with capped exponential backoff."""
    delay = 0.1
    while True:
        try:
            return await action()
        except TRANSIENT as exc:
            metrics.RETRIES.labels(stage).inc()
            log.warning("%s: transient failure, retrying in %.1fs: %r", stage, delay, exc)
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)


async def handle_durably(
    handler: Handler[R], resources: R, events: Sequence[Any], stage: str
) -> None:
    """Handle ``events`` completely before returning: retried, isolated or dead-lettered."""
    try:
        await until_done(lambda: handler(resources, events), stage)
        return
    except Exception as exc:
        log.error("%s: batch of %d failed, isolating events: %r", stage, len(events), exc)
    await isolate(handler, resources, events, stage)


async def isolate(handler: Handler[R], resources: R, events: Sequence[Any], stage: str) -> None:
    """Handle ``events`` one by one; those that still fail go to the dead-letter topic."""
    for event in events:
        await _one(handler, resources, event, stage)


async def _one(handler: Handler[R], resources: R, event: Any, stage: str) -> None:
    try:
        await until_done(lambda: handler(resources, [event]), stage)
    except Exception as exc:
        failure = exc
        await until_done(lambda: _dead_letter(resources, event, failure, stage), stage)


async def _dead_letter(resources: Resources, event: Any, exc: Exception, stage: str) -> None:
    _, producer = await resources.ready()
    message = event.message
    await producer.send_all([dead_letter_of(message, f"{type(exc).__name__}: {exc}", stage)])
    metrics.DEAD_LETTERS.labels(stage).inc()
    log.error(
        "%s: event at %s[%d]@%d dead-lettered: %r",
        stage,
        message.topic,
        message.partition,
        message.offset,
        exc,
    )

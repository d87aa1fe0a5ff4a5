"""A worker's batches: gathered while earlier ones are handled, and handled step by step, each
step in a task of its own.

faust's ``take_events`` stops gathering while the agent's body runs, and the body handles a
batch from its first step to its last: a worker either gathers (faust's per-event work), or
works (decoding, language detection, routing), or waits (on PostgreSQL and the broker), one at
a time (docs/design-notes.md#servicesprocessorspipelinepy).
Here the agent's body only adds events to ``Batches``, which hands them on a batch at a time
to a ``Pipeline`` whose steps take batches in arrival order. Under a backlog, full batches go
in beside the ones in flight (one a step at most), so one batch's languages are detected while
the previous one's customers are resolved and the one before that is written to the timeline.
Under a lighter load a batch goes in when the pipeline is idle: after ``within`` seconds, as
with ``take_events``, or, if it filled while the pipeline was busy, as soon as it is idle (one
batch in flight: its fixed costs, a dozen statements, are shared by all the events that
arrived meanwhile, and no event waits behind a queue of small batches).

Delivery is unchanged: a batch's events are acked, so their offsets may be committed, only
once its last step is done, and batches finish in order, so no commit can pass an unfinished
event (faust-streaming issue #606). A step's transient failures are retried forever (the
partition waits); any other failure waits for every earlier batch to finish, then handles the
batch event by event through all the steps, dead-lettering what still fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic

from services.worker.batches import R, isolate, until_done

log = logging.getLogger(__name__)

#: One step of a handler: what the previous step returned (the raw events for the first)
#: in, what the next step takes out. It may run again on a transient failure, with the same
#: input, so it must not change that input. ``R`` is the worker's resources.
Step = Callable[[R, Any], Awaitable[Any]]
Ack = Callable[[Any], Awaitable[Any]]


async def _until_first(owned: Sequence[Awaitable[Any]], watched: Sequence[Any] = ()) -> None:
    """Wait until one of ``owned`` or ``watched`` is done; cancel the ``owned`` still pending
    (``watched`` tasks are left running)."""
    futures = [asyncio.ensure_future(w) for w in owned]
    try:
        await asyncio.wait([*futures, *watched], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in futures:
            future.cancel()


def _raise_if_ended(tasks: Sequence[asyncio.Task[None]]) -> None:
    """RuntimeError (from the task's own failure, if any) when one of ``tasks``, which never
    end while running, has ended."""
    for task in tasks:
        if task.done():
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError(f"{task.get_name()} failed") from task.exception()
            raise RuntimeError(f"{task.get_name()} has ended")


async def _unless_ended(waiting: Awaitable[Any], tasks: Sequence[asyncio.Task[None]]) -> None:
    """Await ``waiting``; raise instead if one of ``tasks`` ends meanwhile."""
    await _until_first([waiting], tasks)
    _raise_if_ended(tasks)


async def _stop(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _run_steps(steps: Sequence[Step[R]], resources: R, events: Sequence[Any]) -> None:
    """Every step in turn, for events that are not pipelined (isolation)."""
    carry: Any = events
    for step in steps:
        carry = await step(resources, carry)


@dataclass
class _Batch:
    seq: int
    events: Sequence[Any]
    carry: Any
    #: Handled event by event after a step failed: the later steps pass it on.
    isolated: bool = False


class Pipeline(Generic[R]):
    """Runs batches through ``steps`` (each step a task, batches in order) and acks each
    batch's events with ``ack`` once its last step is done."""

    def __init__(self, steps: Sequence[Step[R]], resources: R, stage: str, ack: Ack) -> None:
        if not steps:
            raise ValueError("a pipeline has at least one step")
        self.steps = tuple(steps)
        self._resources = resources
        self._stage = stage
        self._ack = ack
        self._inboxes: list[asyncio.Queue[_Batch]] = [asyncio.Queue(maxsize=1) for _ in steps]
        self._submitted = 0
        self._finished = -1
        self._progress = asyncio.Condition()
        self._tasks: list[asyncio.Task[None]] = []

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Pipeline[R]]:
        """Run the steps' tasks for the block's duration; batches not finished when it ends
        stay unacked (delivered again after a restart or rebalance)."""
        self._tasks = [
            asyncio.create_task(self._step(n), name=f"omnihub-{self._stage}-step-{n}")
            for n in range(len(self.steps))
        ]
        try:
            yield self
        finally:
            await _stop(self._tasks)

    async def submit(self, events: Sequence[Any]) -> None:
        """Hand a batch to the first step; waits while that step still has one waiting."""
        if not self._tasks:
            raise RuntimeError("Pipeline.submit outside Pipeline.running()")
        batch = _Batch(self._submitted, events, events)
        self._submitted += 1
        await _unless_ended(self._inboxes[0].put(batch), self._tasks)

    @property
    def in_flight(self) -> int:
        """Batches submitted and not finished yet."""
        return self._submitted - 1 - self._finished

    async def drained(self) -> None:
        """Wait until every submitted batch is finished (acked)."""
        await self._until_finished(self._submitted - 1)

    async def room(self) -> None:
        """Wait until fewer batches than steps are in flight (one a step at most)."""
        async with self._progress:
            await self._progress.wait_for(lambda: self.in_flight < len(self.steps))

    async def _until_finished(self, seq: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self._finished >= seq)

    async def _step(self, index: int) -> None:
        step = self.steps[index]
        inbox = self._inboxes[index]
        last = index == len(self.steps) - 1
        while True:
            batch = await inbox.get()
            if not batch.isolated:
                await self._run(step, batch)
            if not last:
                await self._inboxes[index + 1].put(batch)
                continue
            for event in batch.events:
                await self._ack(event)
            async with self._progress:
                self._finished = batch.seq
                self._progress.notify_all()

    async def _run(self, step: Step[R], batch: _Batch) -> None:
        carry = batch.carry
        try:
            batch.carry = await until_done(lambda: step(self._resources, carry), self._stage)
        except Exception as exc:
            log.error(
                "%s: batch of %d failed, isolating events: %r", self._stage, len(batch.events), exc
            )
            await self._until_finished(batch.seq - 1)  # in order, after every earlier batch
            whole = functools.partial(_run_steps, self.steps)  # every step, one event at a time
            await isolate(whole, self._resources, batch.events, self._stage)
            batch.isolated = True


class Batches:
    """Gathers events and hands them to ``pipeline`` a batch at a time, in arrival order.

    A partial batch goes in only when the pipeline is idle (at low load one batch is in
    flight at a time and the next grows meanwhile, so per-batch costs are shared as they were
    with ``take_events``); a full one goes in beside the batches in flight (a backlog: each
    step busy with a batch of its own).
    """

    def __init__(self, pipeline: Pipeline[Any], size: int, within: float) -> None:
        if size < 1:
            raise ValueError("a batch holds at least one event")
        self._pipeline = pipeline
        self.size = size
        self.within = within
        self._pending: list[Any] = []
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Batches]:
        """Hand batches on for the block's duration."""
        self._task = asyncio.create_task(self._run(), name="omnihub-batches")
        try:
            yield self
        finally:
            await _stop([self._task])

    async def add(self, event: Any) -> None:
        """Gather one event; waits while a full batch waits to be handed on."""
        if self._task is None:
            raise RuntimeError("Batches.add outside Batches.running()")
        _raise_if_ended([self._task])
        self._pending.append(event)
        self._arrived.set()
        if len(self._pending) >= self.size:
            self._full.set()
            self._room.clear()
            await _unless_ended(self._room.wait(), [self._task])

    async def _run(self) -> None:
        pipeline = self._pipeline
        while True:
            if not self._pending:
                self._arrived.clear()
                await self._arrived.wait()
            if not pipeline.in_flight:  # idle: the batch may wait ``within`` to fill
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.within)
            else:  # busy: a full batch goes in now, a partial one once the pipeline is idle
                await _until_first([self._full.wait(), pipeline.drained()])
                if self._full.is_set():
                    await pipeline.room()
            batch = self._pending[: self.size]
            del self._pending[: self.size]
            self._full.clear()
            self._room.set()
            await pipeline.submit(batch)

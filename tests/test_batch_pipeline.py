"""The worker's batch pipeline: gathering while busy, steps overlapping, acks after the last
step and in order, failures retried or isolated (services/processors/pipeline.py).

These drive the pipeline's own asyncio logic with plain values for events; the tests in
test_pipeline.py run it in a real worker against Kafka and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest

from services.processors.pipeline import Batches, Pipeline
from services.processors.resources import Resources
from tests.support import eventually

NO_RESOURCES = cast(Resources, None)  # the steps below use none


class Recorder:
    """Acks and step calls, in the order they happened."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)
        self.log.append(("ack", event))


async def until(probe: Any) -> None:
    """Let the event loop run until ``probe()`` holds."""

    async def holds() -> bool:
        return bool(probe())

    await eventually(holds, timeout=5, interval=0.001)


async def test_events_gathered_while_busy_go_on_together_in_order_and_capped() -> None:
    handed: list[list[int]] = []
    release = asyncio.Event()

    async def submit(batch: list[int]) -> None:
        handed.append(batch)
        if len(handed) == 1:
            await release.wait()  # the first step is busy with the first batch

    batches = Batches(submit, size=3, within=0.01)
    async with batches.running():
        await batches.add(0)
        await until(lambda: len(handed) == 1)
        adding = asyncio.create_task(_add_all(batches, range(1, 8)))
        await asyncio.sleep(0.05)
        assert not adding.done()  # a full batch waits to be handed on: the adder waits too
        release.set()
        await adding
        await until(lambda: sum(map(len, handed)) == 8)
    assert handed == [[0], [1, 2, 3], [4, 5, 6], [7]]


async def _add_all(batches: Batches, events: range) -> None:
    for event in events:
        await batches.add(event)


async def test_an_idle_pipeline_waits_within_for_a_batch_to_fill() -> None:
    handed: list[list[int]] = []

    async def submit(batch: list[int]) -> None:
        handed.append(batch)

    batches = Batches(submit, size=100, within=0.2)
    async with batches.running():
        await asyncio.sleep(0)  # the hand-over task is idle, waiting for an event
        await batches.add(1)
        await asyncio.sleep(0.02)
        await batches.add(2)  # within the 0.2 s: the same batch
        await until(lambda: bool(handed))
    assert handed == [[1, 2]]


async def test_steps_overlap_and_acks_follow_the_last_step_in_order() -> None:
    rec = Recorder()
    gate = asyncio.Event()

    async def first(resources: Resources, events: Sequence[str]) -> list[str]:
        rec.log.append(("first", list(events)))
        return [e.upper() for e in events]

    async def last(resources: Resources, carry: list[str]) -> None:
        rec.log.append(("last", carry))
        if carry == ["A"]:
            await gate.wait()

    pipeline = Pipeline([first, last], NO_RESOURCES, "test", rec.ack)
    async with pipeline.running():
        await pipeline.submit(["a"])
        await pipeline.submit(["b"])
        await until(lambda: ("first", ["b"]) in rec.log)
        # the second batch passed the first step while the first batch waits in the last
        assert rec.acked == []
        gate.set()
        await pipeline.drained()
    assert rec.acked == ["a", "b"]
    assert rec.log.index(("ack", "a")) > rec.log.index(("last", ["A"]))
    assert rec.log.index(("last", ["B"])) > rec.log.index(("ack", "a"))


async def test_a_transient_failure_retries_the_step_with_the_same_input() -> None:
    rec = Recorder()
    seen: list[list[int]] = []

    async def flaky(resources: Resources, events: Sequence[int]) -> None:
        seen.append(list(events))
        if len(seen) == 1:
            raise OSError("connection reset")

    pipeline = Pipeline([flaky], NO_RESOURCES, "test", rec.ack)
    async with pipeline.running():
        await pipeline.submit([1, 2])
        await pipeline.drained()
    assert seen == [[1, 2], [1, 2]]
    assert rec.acked == [1, 2]


async def test_a_failing_batch_is_handled_event_by_event_after_earlier_batches() -> None:
    rec = Recorder()
    gate = asyncio.Event()

    async def first(resources: Resources, events: Sequence[int]) -> list[int]:
        if len(events) > 1 and 13 in events:
            raise ValueError("a record the batch statement refuses")
        rec.log.append(("first", list(events)))
        return list(events)

    async def last(resources: Resources, carry: list[int]) -> None:
        if carry == [1]:
            await gate.wait()
        rec.log.append(("last", carry))

    pipeline = Pipeline([first, last], NO_RESOURCES, "test", rec.ack)
    async with pipeline.running():
        await pipeline.submit([1])
        await pipeline.submit([12, 13])
        await pipeline.submit([20])
        await asyncio.sleep(0.05)
        assert ("first", [12]) not in rec.log  # isolation waits for the earlier batch
        gate.set()
        await pipeline.drained()
    lasts = [carry for what, carry in rec.log if what == "last"]
    assert lasts == [[1], [12], [13], [20]]  # each event alone through every step, in order
    assert rec.acked == [1, 12, 13, 20]


async def test_submitting_outside_running_or_after_a_step_task_died_raises() -> None:
    rec = Recorder()

    async def step(resources: Resources, events: Sequence[int]) -> None:
        return None

    pipeline = Pipeline([step], NO_RESOURCES, "test", rec.ack)
    with pytest.raises(RuntimeError):
        await pipeline.submit([1])
    async with pipeline.running():
        for task in pipeline._tasks:
            task.cancel()
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="ended"):
            await pipeline.submit([1])

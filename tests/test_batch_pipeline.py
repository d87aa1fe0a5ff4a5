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
from services.worker.resources import Resources
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


def handing(rec: Recorder, gate: asyncio.Event, steps: int = 1) -> Pipeline:
    """A pipeline of one or two steps that records each batch at its first step; its last
    step holds the batch ``[0]`` until ``gate`` is set."""

    async def first(resources: Resources, events: Sequence[int]) -> list[int]:
        rec.log.append(("first", list(events)))
        if steps == 1 and list(events) == [0]:
            await gate.wait()
        return list(events)

    async def hold(resources: Resources, carry: list[int]) -> None:
        if carry == [0]:
            await gate.wait()

    return Pipeline([first, hold][:steps], NO_RESOURCES, "test", rec.ack)


def handed(rec: Recorder) -> list[list[int]]:
    """The batches the pipeline's first step took, in order."""
    return [batch for what, batch in rec.log if what == "first"]


async def _add_all(batches: Batches, events: range) -> None:
    for event in events:
        await batches.add(event)


async def _hold_0_then_add_1_2(batches: Batches, rec: Recorder) -> None:
    await batches.add(0)
    await until(lambda: handed(rec) == [[0]])  # held in the last step
    await _add_all(batches, range(1, 3))


async def test_an_idle_pipeline_gets_what_arrives_within_the_window_as_one_batch() -> None:
    rec, gate = Recorder(), asyncio.Event()
    gate.set()
    pipeline = handing(rec, gate)
    async with pipeline.running(), Batches(pipeline, size=100, within=0.2).running() as batches:
        await asyncio.sleep(0)  # the hand-over task is idle, waiting for an event
        await batches.add(1)
        await asyncio.sleep(0.02)
        await batches.add(2)  # within the 0.2 s: the same batch
        await until(lambda: len(rec.acked) == 2)
    assert handed(rec) == [[1, 2]]


async def test_a_partial_batch_waits_for_the_pipeline_to_be_idle() -> None:
    rec, gate = Recorder(), asyncio.Event()
    pipeline = handing(rec, gate, steps=2)
    async with pipeline.running(), Batches(pipeline, size=10, within=0.01).running() as batches:
        await _hold_0_then_add_1_2(batches, rec)
        await asyncio.sleep(0.1)  # ten windows: still not handed on beside the held batch
        assert handed(rec) == [[0]]
        gate.set()
        await until(lambda: len(rec.acked) == 3)
    assert handed(rec) == [[0], [1, 2]]


async def test_full_batches_go_in_beside_the_one_in_flight_one_a_step() -> None:
    rec, gate = Recorder(), asyncio.Event()
    pipeline = handing(rec, gate, steps=2)
    async with pipeline.running(), Batches(pipeline, size=2, within=0.01).running() as batches:
        await _hold_0_then_add_1_2(batches, rec)
        await until(lambda: handed(rec) == [[0], [1, 2]])  # full: in beside it
        adding = asyncio.create_task(_add_all(batches, range(3, 5)))
        await asyncio.sleep(0.05)
        assert handed(rec) == [[0], [1, 2]]  # two steps, two batches in flight at most
        gate.set()
        await adding
        await until(lambda: len(rec.acked) == 5)
    assert handed(rec) == [[0], [1, 2], [3, 4]]
    assert rec.acked == [0, 1, 2, 3, 4]


async def test_a_full_batch_waits_for_room_and_the_adder_waits_with_it() -> None:
    rec, gate = Recorder(), asyncio.Event()
    pipeline = handing(rec, gate)  # one step: one batch in flight at most
    async with pipeline.running(), Batches(pipeline, size=3, within=0.01).running() as batches:
        await batches.add(0)
        await until(lambda: handed(rec) == [[0]])
        adding = asyncio.create_task(_add_all(batches, range(1, 8)))
        await asyncio.sleep(0.05)
        assert not adding.done()  # a full batch waits for room: the adder waits too
        assert handed(rec) == [[0]]
        gate.set()
        await adding
        await until(lambda: len(rec.acked) == 8)
    assert handed(rec) == [[0], [1, 2, 3], [4, 5, 6], [7]]


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

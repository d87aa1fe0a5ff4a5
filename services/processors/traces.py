"""The processors' part of distributed tracing (``services.tracing``): the trace headers each
event's records carry on, and, tracing on, the spans of its timeline write and its routing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from schemas.cloudevents import NO_TRACE, Trace
from schemas.topics import DELIVERY, INTERACTIONS, UNIFIED
from services import tracing
from services.bus.records import Record, traced
from services.worker.decode import Decoded

if TYPE_CHECKING:
    from services.processors.agents import Work

#: The topic each agent consumes.
_CONSUMED = {"unify": INTERACTIONS.name, "project": UNIFIED.name, "delivery": DELIVERY.name}


def by_event(decoded: Decoded[Any]) -> dict[uuid.UUID, Trace]:
    """The trace headers of the records the events came in, by event id (only those that had
    some: without traces, an empty dict and no lookups that find anything)."""
    return {m.event_id: t for m, t in zip(decoded.models, decoded.traces, strict=True) if t}


def _consumed(agent: str) -> dict[str, Any]:
    return {"messaging.system": "kafka", "messaging.destination.name": _CONSUMED[agent]}


def write_spans(
    work: Work, published: Sequence[uuid.UUID], agent: str
) -> tuple[list[Record], list[Any]]:
    """Tracing on, just after the batch's timeline rows are committed: each event's
    ``omnihub.timeline.write`` span (from the batch's first step to now), and for each event
    whose routed records are to be published an ``omnihub.route.publish`` span started now,
    which the caller ends once they are acked. Returns those records, each carrying its
    event's route span, in the order ``RouteStep.record`` returned them, and the route spans."""
    assert work.routed is not None
    now = time.time_ns()
    traces = work.traces
    tracing.batch_spans(
        tracing.TIMELINE,
        [
            (
                traces.get(e.event_id, NO_TRACE),
                {"omnihub.event_id": str(e.event_id), "omnihub.customer_id": str(e.customer_id)},
            )
            for e in work.unified
        ],
        work.started,
        now,
        {"omnihub.agent": agent, **_consumed(agent)},
    )
    encoded = work.routed.encoded
    spans = tracing.batch_spans(
        tracing.ROUTE,
        [
            (
                traces.get(event_id, NO_TRACE),
                {
                    "omnihub.event_id": str(event_id),
                    "messaging.destination.name": ",".join(
                        r.topic for r in encoded[event_id].records
                    ),
                },
            )
            for event_id in published
        ],
        now,
        None,
        {"omnihub.agent": agent, "messaging.system": "kafka", "messaging.operation.type": "send"},
        kind="PRODUCER",
    )
    records = [
        traced(record, tracing.carried_by(span))
        for event_id, span in zip(published, spans, strict=True)
        for record in encoded[event_id].records
    ]
    return records, spans


def delivery_spans(decoded: Decoded[Any], started: int) -> None:
    """Tracing on: each delivery state's ``omnihub.timeline.write`` span (its batch, from
    ``started`` to now, written)."""
    tracing.batch_spans(
        tracing.TIMELINE,
        [
            (trace, {"omnihub.command_id": str(s.command_id), "omnihub.state": s.state.value})
            for s, trace in zip(decoded.models, decoded.traces, strict=True)
        ],
        started,
        time.time_ns(),
        {"omnihub.agent": "delivery", **_consumed("delivery")},
    )

"""Turn models into Kafka records (key, JSON value, CloudEvents headers) for their topic."""

from __future__ import annotations

from dataclasses import dataclass, replace

from pydantic import BaseModel

from schemas.cloudevents import NO_TRACE, Headers, Trace, ce_headers, with_trace
from schemas.events import utcnow
from schemas.topics import TopicSpec


@dataclass(frozen=True, slots=True)
class Record:
    """One record ready to send."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def to_record(
    spec: TopicSpec, model: BaseModel, event_id: str, source: str, trace: Trace = NO_TRACE
) -> Record:
    """Encode ``model`` for ``spec``'s topic with its partition key and CloudEvents headers
    (``trace``: the trace headers it carries on, see ``services.tracing``)."""
    key: bytes | None = getattr(model, "partition_key", None)
    headers = ce_headers(
        event_id=event_id, ce_type=spec.ce_type, source=source, time=utcnow(), trace=trace
    )
    return Record(topic=spec.name, key=key, value=model.model_dump_json().encode(), headers=headers)


def traced(record: Record, trace: Trace) -> Record:
    """``record`` carrying ``trace`` instead of the trace headers it had."""
    return replace(record, headers=with_trace(record.headers, trace))

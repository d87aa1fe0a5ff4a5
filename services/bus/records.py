"""Turn models into Kafka records (key, JSON value, CloudEvents headers) for their topic."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.cloudevents import Headers, ce_headers
from schemas.events import utcnow
from schemas.topics import TopicSpec


@dataclass(frozen=True, slots=True)
class Record:
    """One record ready to send."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers


def to_record(spec: TopicSpec, model: BaseModel, event_id: str, source: str) -> Record:
    """Encode ``model`` for ``spec``'s topic with its partition key and CloudEvents headers."""
    key: bytes | None = getattr(model, "partition_key", None)
    return Record(
        topic=spec.name,
        key=key,
        value=model.model_dump_json().encode(),
        headers=ce_headers(event_id=event_id, ce_type=spec.ce_type, source=source, time=utcnow()),
    )

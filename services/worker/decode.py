"""Decode a batch of raw faust events into models (with their trace headers); what fails
becomes a dead letter."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from schemas.cloudevents import Trace, trace_of
from services.bus.deadletter import dead_letter
from services.bus.records import Record
from services.keys.reader import Unopened

M = TypeVar("M", bound=BaseModel)


@dataclass
class Decoded(Generic[M]):
    """The models that validated, and the dead letters of those that did not."""

    models: list[M]
    dead: list[Record]
    #: Each model's trace headers (``models[i]``'s at ``traces[i]``), copied unparsed.
    traces: list[Trace] = field(default_factory=list)


def message_headers(message: Any) -> list[tuple[str, bytes]]:
    """The headers of a faust message as (name, bytes) pairs."""
    raw = message.headers or []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), bytes(v or b"")) for k, v in items]


def decode_batch(
    events: Sequence[Any],
    model: type[M],
    stage: str,
    values: Sequence[bytes | Unopened] | None = None,
) -> Decoded[M]:
    """Validate each event's value as ``model``; invalid ones go to the dead-letter list.

    ``values``: the events' values opened (``SealedReader.open_each``) when the topic's
    records are sealed; one that could not be opened is dead-lettered with the reason.
    """
    models: list[M] = []
    dead: list[Record] = []
    traces: list[Trace] = []
    for n, event in enumerate(events):
        message = event.message
        value = message.value if values is None else values[n]
        if isinstance(value, Unopened):
            dead.append(dead_letter_of(message, f"sealed value: {value.reason}", stage))
            continue
        try:
            models.append(model.model_validate_json(value or b""))
            traces.append(_trace(message))
        except ValidationError as exc:
            summary = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)
            )
            dead.append(
                dead_letter_of(message, f"{model.__name__} validation failed: {summary}", stage)
            )
    return Decoded(models, dead, traces)


def _trace(message: Any) -> Trace:
    """A faust message's trace headers (``message_headers`` without copying the others)."""
    raw = message.headers
    return trace_of(raw.items() if isinstance(raw, dict) else raw)


def dead_letter_of(message: Any, error: str, stage: str) -> Record:
    """The dead-letter record of a consumed faust message, keeping its bytes and headers."""
    return dead_letter(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=message_headers(message),
        error=error,
        stage=stage,
    )

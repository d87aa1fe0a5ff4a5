"""CloudEvents binary-mode Kafka headers (ce_id, ce_type, ce_source, ce_specversion ...)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

Headers = list[tuple[str, bytes]]

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

#: Header names of omnihub's own extensions (the dead-letter reason and origin).
ERROR_HEADER = "x-omnihub-error"
STAGE_HEADER = "x-omnihub-stage"
ORIGIN_TOPIC_HEADER = "x-omnihub-source-topic"
ORIGIN_PARTITION_HEADER = "x-omnihub-source-partition"
ORIGIN_OFFSET_HEADER = "x-omnihub-source-offset"
ORIGINAL_TYPE_HEADER = "x-omnihub-original-ce-type"


#: Where ``ce_headers`` puts ``ce_id``.
_CE_ID_AT = 1


def ce_headers(
    *, event_id: str, ce_type: str, source: str, time: datetime | None = None, subject: str = ""
) -> Headers:
    """Return the CloudEvents binary-mode headers of one record."""
    headers: Headers = [
        ("ce_specversion", SPECVERSION.encode()),
        ("ce_id", event_id.encode()),
        ("ce_type", ce_type.encode()),
        ("ce_source", source.encode()),
        ("content-type", CONTENT_TYPE.encode()),
    ]
    if time is not None:
        headers.append(("ce_time", time.isoformat().encode()))
    if subject:
        headers.append(("ce_subject", subject.encode()))
    return headers


def with_event_id(headers: Headers, event_id: str) -> Headers:
    """A copy of ``headers`` (from ``ce_headers``) for another event: its ``ce_id`` replaced,
    so a batch's records of one type share the rest, encoded once."""
    value = event_id.encode()
    if len(headers) > _CE_ID_AT and headers[_CE_ID_AT][0] == "ce_id":  # as ce_headers made it
        copy = headers.copy()
        copy[_CE_ID_AT] = ("ce_id", value)
        return copy
    return [(name, value) if name == "ce_id" else (name, old) for name, old in headers]


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> Mapping[str, str]:
    """Return record headers as a str -> str mapping (the last value of a name wins)."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}

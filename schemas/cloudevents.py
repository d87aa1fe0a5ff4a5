"""CloudEvents binary-mode Kafka headers (ce_id, ce_type, ce_source, ce_specversion ...), and
the distributed-tracing extension's (ce_traceparent, ce_tracestate)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

Headers = list[tuple[str, bytes]]
#: A record's trace headers (``TRACE_HEADERS``), as they came: immutable, so shared freely.
Trace = tuple[tuple[str, bytes], ...]

SPECVERSION = "1.0"
CONTENT_TYPE = "application/json"

#: Header names of omnihub's own extensions (the dead-letter reason and origin).
ERROR_HEADER = "x-omnihub-error"
STAGE_HEADER = "x-omnihub-stage"
ORIGIN_TOPIC_HEADER = "x-omnihub-source-topic"
ORIGIN_PARTITION_HEADER = "x-omnihub-source-partition"
ORIGIN_OFFSET_HEADER = "x-omnihub-source-offset"
ORIGINAL_TYPE_HEADER = "x-omnihub-original-ce-type"

#: The CloudEvents distributed-tracing extension in Kafka binary mode: W3C Trace Context's
#: ``traceparent`` and ``tracestate``, carried from the request through every topic.
TRACEPARENT_HEADER = "ce_traceparent"
TRACESTATE_HEADER = "ce_tracestate"
TRACE_HEADERS = frozenset({TRACEPARENT_HEADER, TRACESTATE_HEADER})
#: The same as W3C Trace Context names them in HTTP, and the record header each becomes.
HTTP_TRACE_HEADERS = {"traceparent": TRACEPARENT_HEADER, "tracestate": TRACESTATE_HEADER}
#: No trace.
NO_TRACE: Trace = ()


#: Where ``ce_headers`` puts ``ce_id``.
_CE_ID_AT = 1


def ce_headers(
    *,
    event_id: str,
    ce_type: str,
    source: str,
    time: datetime | None = None,
    subject: str = "",
    trace: Trace = NO_TRACE,
) -> Headers:
    """Return the CloudEvents binary-mode headers of one record (its ``trace`` last)."""
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
    headers.extend(trace)
    return headers


def with_event_id(headers: Headers, event_id: str, trace: Trace = NO_TRACE) -> Headers:
    """A copy of ``headers`` (from ``ce_headers``, without a trace) for another event: its
    ``ce_id`` replaced and its ``trace`` added, so a batch's records of one type share the
    rest, encoded once."""
    value = event_id.encode()
    if len(headers) > _CE_ID_AT and headers[_CE_ID_AT][0] == "ce_id":  # as ce_headers made it
        copy = headers.copy()
        copy[_CE_ID_AT] = ("ce_id", value)
    else:
        copy = [(name, value) if name == "ce_id" else (name, old) for name, old in headers]
    copy.extend(trace)
    return copy


def trace_of(headers: Iterable[tuple[str, bytes | None]] | None) -> Trace:
    """A record's trace headers, copied as they are: their values are not parsed (a record
    without any costs one look at each header name)."""
    if not headers:
        return NO_TRACE
    for name, _ in headers:
        if name in TRACE_HEADERS:
            return tuple((n, value or b"") for n, value in headers if n in TRACE_HEADERS)
    return NO_TRACE


def with_trace(headers: Headers, trace: Trace) -> Headers:
    """A copy of ``headers`` whose trace headers are ``trace`` (any others dropped)."""
    return [h for h in headers if h[0] not in TRACE_HEADERS] + list(trace)


def header_map(headers: Iterable[tuple[str, bytes | None]] | None) -> Mapping[str, str]:
    """Return record headers as a str -> str mapping (the last value of a name wins)."""
    return {name: (value or b"").decode("utf-8", "replace") for name, value in headers or ()}

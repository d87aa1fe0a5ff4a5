"""Distributed traces: the CloudEvents distributed-tracing extension (W3C Trace Context as the
``ce_traceparent`` and ``ce_tracestate`` headers, ``schemas.cloudevents``) carried from a web
request through every topic, and OpenTelemetry spans of each stage when an OTLP endpoint is
configured (``OTEL_EXPORTER_OTLP_ENDPOINT``, docs/operations.md#traces).

Off (the default): no span is made and no header value is parsed. A web request's
``traceparent``/``tracestate`` are copied onto the records it makes, and each stage copies the
trace headers of the record it consumed onto the records it makes for it, so a trace started
outside still reaches the department topics. On, each stage is a span whose parent is the
consumed record's trace (the request's, in the web process), and the records it makes carry
the span's context instead:

- ``omnihub.ingest.publish`` (web processes): the records of one request, acked by the broker;
  a request without ``traceparent`` starts a new trace;
- ``omnihub.timeline.write`` (processors): an event's batch, from its first step to the commit
  of its timeline rows (delivery states: their batch's write);
- ``omnihub.route.publish`` (processors): its routed records, from that commit to their acks;
- ``omnihub.dispatch.send`` (dispatcher): a command claimed, sent by its channel's adapter and
  recorded.

The opentelemetry SDK and exporter are imported only when tracing is turned on.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from schemas.cloudevents import HTTP_TRACE_HEADERS, NO_TRACE, TRACEPARENT_HEADER, Trace
from services.bus.records import Record, traced

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer

log = logging.getLogger(__name__)

#: The names of the spans (module docstring).
INGEST = "omnihub.ingest.publish"
TIMELINE = "omnihub.timeline.write"
ROUTE = "omnihub.route.publish"
DISPATCH = "omnihub.dispatch.send"

#: A W3C header's name as ASGI gives it (lower-case bytes) -> the record header it becomes.
_FROM_HTTP = {name.encode(): header for name, header in HTTP_TRACE_HEADERS.items()}
#: A record header -> its W3C name (the propagator's carrier keys).
_TO_HTTP = {header: name for name, header in HTTP_TRACE_HEADERS.items()}

_tracer: Tracer | None = None
#: The trace headers of the web request being served; None outside one.
_request: ContextVar[Trace | None] = ContextVar("omnihub_request_trace", default=None)


def enabled() -> bool:
    """Whether spans are made (an exporter is configured)."""
    return _tracer is not None


def setup(endpoint: str | None, service: str) -> bool:
    """Turn tracing on for this process when ``endpoint`` (OTEL_EXPORTER_OTLP_ENDPOINT) is set:
    spans exported in batches over OTLP/HTTP, as ``service`` unless OTEL_SERVICE_NAME says;
    the SDK's other OTEL_* variables (sampler, batch delay, headers) apply. Returns whether
    tracing is on."""
    if not endpoint or _tracer is not None:
        return enabled()
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    traces_endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    url = traces_endpoint or f"{endpoint.rstrip('/')}/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)  # flushed and shut down at exit by the SDK
    use(provider)
    log.info("tracing on: spans of %s exported to %s", name, url)
    return True


def use(provider: Any) -> None:
    """Make spans with ``provider`` (an SDK TracerProvider; tests give theirs), or stop
    making them (None)."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("omnihub")


# --- the web process ------------------------------------------------------------------------


def enter_request(headers: Iterable[tuple[bytes, bytes]]) -> Token[Trace | None]:
    """Note the trace a web request came with (its ``traceparent`` and ``tracestate``, copied
    unparsed; a ``tracestate`` alone is no trace) for the records it makes."""
    found = tuple((_FROM_HTTP[name], value) for name, value in headers if name in _FROM_HTTP)
    if found and not any(name == TRACEPARENT_HEADER for name, _ in found):
        found = NO_TRACE
    return _request.set(found)


def leave_request(token: Token[Trace | None]) -> None:
    """The request is served (``enter_request``'s token)."""
    _request.reset(token)


def request_trace() -> Trace | None:
    """The trace of the web request being served (empty if it came without one); None outside
    a request (a worker, a poller)."""
    return _request.get()


@contextlib.contextmanager
def request_publish(records: list[Record], trace: Trace) -> Iterator[list[Record]]:
    """The records a request publishes within the block, carrying its trace: off, the
    request's ``trace`` as it came; on, the context of an ``omnihub.ingest.publish`` span
    (child of ``trace``, else a new trace) that the block's end ends."""
    tracer = _tracer
    if tracer is None:
        yield [traced(r, trace) for r in records] if trace else records
        return
    from opentelemetry.trace import SpanKind

    topics = sorted({r.topic for r in records})
    span = tracer.start_span(
        INGEST,
        context=_parent(trace),
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": ",".join(topics),
            "messaging.batch.message_count": len(records),
            "omnihub.event_ids": [_ce_id(r) for r in records],
        },
    )
    carried = carried_by(span)
    try:
        yield [traced(r, carried) for r in records]
    except BaseException as exc:
        failed(span, exc)
        raise
    finally:
        span.end()


def _ce_id(record: Record) -> str:
    return next((v.decode() for n, v in record.headers if n == "ce_id"), "")


# --- spans of the workers (tracing on) ------------------------------------------------------


@functools.cache
def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def _parent(trace: Trace) -> Context:
    """The context a span continues: ``trace``'s (a consumed record's headers), or an empty
    one (a new trace) when it has none or an invalid one."""
    from opentelemetry.context import Context

    if not trace:
        return Context()
    carrier = {_TO_HTTP[name]: value.decode("latin-1") for name, value in trace}
    context: Context = _propagator().extract(carrier, Context())
    return context


def carried_by(span: Span) -> Trace:
    """The trace headers of ``span``'s context, for the records made under it."""
    from opentelemetry.trace import set_span_in_context

    carrier: dict[str, str] = {}
    _propagator().inject(carrier, set_span_in_context(span))
    return tuple(
        (HTTP_TRACE_HEADERS[name], carrier[name].encode())
        for name in HTTP_TRACE_HEADERS
        if carrier.get(name)
    )


def start(
    name: str,
    trace: Trace,
    *,
    kind: str = "INTERNAL",
    start_time: int | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Span:
    """Start a span continuing ``trace`` (a consumed record's trace headers); ``kind`` names
    an OpenTelemetry SpanKind, ``start_time`` is in ns since the epoch (now if None)."""
    from opentelemetry.trace import SpanKind

    if _tracer is None:
        raise RuntimeError("tracing is off")
    return _tracer.start_span(
        name,
        context=_parent(trace),
        kind=SpanKind[kind],
        start_time=start_time,
        attributes=dict(attributes or {}),
    )


def finish(spans: Iterable[Span], end_time: int | None = None) -> None:
    """End ``spans`` (at ``end_time``, ns since the epoch, or now)."""
    for span in spans:
        span.end(end_time)


def failed(span: Span, exc: BaseException) -> None:
    """Record ``exc`` on ``span`` and mark it failed."""
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


def batch_spans(
    name: str,
    events: Sequence[tuple[Trace, Mapping[str, Any]]],
    start_time: int,
    end_time: int | None,
    attributes: Mapping[str, Any],
    kind: str = "CONSUMER",
) -> list[Span]:
    """One span per event of a batch (``events``: each one's consumed trace and attributes),
    all timed as the batch: made after the work from its clock readings, so the work itself
    pays nothing, and each in its event's own trace (a batch span linked to them would sit in
    a trace of its own, and the requests' traces would not show the work). Ended at
    ``end_time``, unless None (the caller ends them)."""
    common = {**attributes, "messaging.batch.message_count": len(events)}
    spans = []
    for trace, own in events:
        span = start(name, trace, kind=kind, start_time=start_time, attributes={**common, **own})
        if end_time is not None:
            span.end(end_time)
        spans.append(span)
    return spans

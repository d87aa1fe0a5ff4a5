"""Prometheus metrics of the stream processors (besides every worker's, in
``services.worker.metrics``)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import Counter, Histogram

from schemas import UnifiedEvent

TIMELINE_ROWS = Counter("omnihub_timeline_rows_total", "Rows newly written to the timeline")
ECHOES_DROPPED = Counter(
    "omnihub_echoes_dropped_total", "Inbound echoes of our own outbound messages dropped"
)
ACCEPTANCE_TO_TIMELINE = Histogram(
    "omnihub_acceptance_to_timeline_seconds",
    "Seconds from an event's acceptance (its received_at) to the commit of its batch's"
    " timeline write (a redelivered event counts again, from its first acceptance)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)


def observe_acceptance(events: Iterable[UnifiedEvent], committed: datetime) -> None:
    """Observe each event's acceptance -> timeline seconds, its batch committed at
    ``committed``."""
    observe_many(
        ACCEPTANCE_TO_TIMELINE,
        [(committed - e.interaction.received_at).total_seconds() for e in events],
    )


def observe_many(histogram: Histogram, values: list[float]) -> None:
    """``histogram.observe`` each of ``values``, its buckets and sum updated once a batch:
    ``observe`` takes 0.8-1.7 us a value (a lock and a walk of the buckets each), this
    0.1-0.2 (a bisect; figures of docs/operations.md#consumer-lag-and-latency-metrics). Falls
    back to ``observe`` if the client's internals are not the ones this was written for
    (prometheus-client 0.26; ``tests/test_traces.py`` compares both)."""
    if not values:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bound >= value (the last is +Inf)
    for bucket, count in zip(buckets, counts, strict=True):
        if count:
            bucket.inc(count)
    total.inc(sum(values))

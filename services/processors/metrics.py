"""Prometheus metrics of the stream processors (besides every worker's, in
``services.worker.metrics``)."""

from prometheus_client import Counter

TIMELINE_ROWS = Counter("omnihub_timeline_rows_total", "Rows newly written to the timeline")
ECHOES_DROPPED = Counter(
    "omnihub_echoes_dropped_total", "Inbound echoes of our own outbound messages dropped"
)

"""Prometheus metrics of the stream processors."""

from prometheus_client import Counter

PROCESSED = Counter("omnihub_processed_total", "Events processed by stage", ["stage"])
DEAD_LETTERS = Counter(
    "omnihub_dead_letters_total", "Records sent to the dead-letter topic", ["stage"]
)
TIMELINE_ROWS = Counter("omnihub_timeline_rows_total", "Rows newly written to the timeline")
RETRIES = Counter("omnihub_retries_total", "Transient failures retried", ["stage"])
ECHOES_DROPPED = Counter(
    "omnihub_echoes_dropped_total", "Inbound echoes of our own outbound messages dropped"
)

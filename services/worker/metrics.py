"""Prometheus metrics every worker keeps (each worker's own in ``services.<worker>.metrics``)."""

from prometheus_client import Counter

PROCESSED = Counter("omnihub_processed_total", "Events processed by stage", ["stage"])
DEAD_LETTERS = Counter(
    "omnihub_dead_letters_total", "Records sent to the dead-letter topic", ["stage"]
)
RETRIES = Counter("omnihub_retries_total", "Transient failures retried", ["stage"])

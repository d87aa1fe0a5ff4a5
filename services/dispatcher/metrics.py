"""Prometheus metrics of the dispatcher (besides every worker's, in ``services.worker.metrics``):
what the providers answered, by channel."""

from prometheus_client import Counter, Histogram

SENDS = Counter(
    "omnihub_sends_total",
    "Outbound commands handled, by channel and delivery state (sent, failed, refused, ...)",
    ["channel", "state"],
)
SEND_FAILURES = Counter(
    "omnihub_send_failures_total",
    "Sends the provider failed (the adapter's SendError), by channel and error code",
    ["channel", "error_code"],
)
SEND_SECONDS = Histogram(
    "omnihub_send_seconds",
    "Time an adapter's send took (the provider's answer included), by channel",
    ["channel"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
MAYBE_TWICE = Counter(
    "omnihub_sends_maybe_twice_total",
    "Sends repeated after an attempt died between the provider's answer and its record, by channel",
    ["channel"],
)

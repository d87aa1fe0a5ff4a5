"""Prometheus metrics every worker keeps (each worker's own in ``services.<worker>.metrics``),
and the consumer lag each worker measures for its own partitions."""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)

PROCESSED = Counter("omnihub_processed_total", "Events processed by stage", ["stage"])
DEAD_LETTERS = Counter(
    "omnihub_dead_letters_total", "Records sent to the dead-letter topic", ["stage"]
)
RETRIES = Counter("omnihub_retries_total", "Transient failures retried", ["stage"])
CONSUMER_LAG = Gauge(
    "omnihub_consumer_lag",
    "Records of a partition this worker holds that its consumer group has not committed: the"
    " partition's end offset less the committed offset (or the position), every LAG_EVERY"
    " seconds. The end is the later of ListOffsets' and the last fetch's high watermark: Tansu's"
    " ListOffsets answers one past the start of the last record batch, so with fetches paused it"
    " may undercount by up to that batch's records less one (never below 0)",
    ["group", "topic", "partition"],
)

#: Seconds between two measures of the consumer lag: one ListOffsets request each.
LAG_EVERY = 5.0

Labels = tuple[str, str, str]


async def measure_lag(consumer: Any, group: str, shown: set[Labels]) -> set[Labels]:
    """Set ``CONSUMER_LAG`` for every partition ``consumer`` (omnihub's faust consumer) holds,
    and remove the series of those in ``shown`` (the last measure's) it no longer holds;
    returns the series set."""
    held = sorted(consumer.assignment())
    listed: dict[Any, int] = dict(await consumer.highwaters(*held)) if held else {}
    measured: set[Labels] = set()
    for tp in held:
        end = max(
            (e for e in (listed.get(tp), _fetched_end(consumer, tp)) if e is not None), default=None
        )
        done = consumer.committed_offset(tp)
        if done is None:  # nothing committed by the group yet: what has been fetched
            done = await consumer.position(tp)
        if end is None or done is None:
            continue
        labels = (group, tp.topic, str(tp.partition))
        CONSUMER_LAG.labels(*labels).set(max(0, end - done))
        measured.add(labels)
    for labels in shown - measured:
        CONSUMER_LAG.remove(*labels)
    return measured


def _fetched_end(consumer: Any, tp: Any) -> int | None:
    """The high watermark of ``tp``'s last fetch (exact on Tansu too, but only as fresh as
    that fetch); None when unknown, or when the partition was revoked meanwhile."""
    try:
        end: int | None = consumer.highwater(tp)
    except (AssertionError, KeyError):  # aiokafka asserts the partition is still assigned
        return None
    return end


def watch_lag(app: Any, every: float = LAG_EVERY) -> None:
    """Measure the consumer lag of ``app``'s group every ``every`` seconds while it runs (a
    faust timer; the group is the app's id)."""
    shown: set[Labels] = set()

    async def consumer_lag() -> None:
        nonlocal shown
        try:
            shown = await measure_lag(app.consumer, app.conf.id, shown)
        except Exception as exc:  # a rebalance, the broker away: the next measure retries
            log.info("consumer lag not measured: %r", exc)

    app.timer(every, name=f"{app.conf.id}.consumer_lag")(consumer_lag)

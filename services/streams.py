"""Shared faust settings for omnihub's workers, and running one in this process."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import faust

from services.config import Settings


def _limit_fetch_wait(max_wait_ms: int) -> None:
    """Make faust's consumers wait at most ``max_wait_ms`` for data in a fetch.

    faust hard-codes fetch_max_wait_ms=1500 for its worker consumer. Tansu does not answer a
    waiting fetch early when data arrives, so every hop of the pipeline would wait up to
    1.5 s (measured: 0.75 s on average per hop with 1500, 2 ms with 50). There is no faust
    setting for it, so the consumer faust creates is adjusted before it starts.
    """
    from faust.transport.drivers import aiokafka as driver

    thread = driver.AIOKafkaConsumerThread
    original = getattr(thread, "_omnihub_original_create", None) or thread._create_worker_consumer

    def create(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = max_wait_ms
        return consumer

    setattr(thread, "_omnihub_original_create", original)  # noqa: B010
    setattr(thread, "_create_worker_consumer", create)  # noqa: B010


def faust_app(app_id: str, settings: Settings, bootstrap: str, **overrides: Any) -> faust.App:
    """A faust app tuned for omnihub: short session timeout, no leader topic, no web."""
    _limit_fetch_wait(settings.fetch_max_wait_ms)
    datadir = Path(settings.data_dir).resolve() / "faust" / app_id
    datadir.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {
        "broker": f"kafka://{bootstrap}",
        # Tansu answers a group join after about half the session timeout (faust's 60 s
        # default meant ~32 s before the first event); 6 s brings it to a few seconds.
        "broker_session_timeout": settings.worker_session_timeout,
        "broker_heartbeat_interval": 1.0,
        "broker_commit_interval": settings.commit_interval,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "topic_disable_leader": True,
        "store": "memory://",
        "web_enabled": False,
        "datadir": str(datadir),
    }
    config.update(overrides)
    return faust.App(app_id, **config)


def ready_file(settings: Settings, app_id: str, pid: int) -> Path:
    """The file a worker keeps while it has joined its group and holds partitions."""
    return Path(settings.data_dir).resolve() / "ready" / f"{app_id}.{pid}"


def mark_ready(app: faust.App, settings: Settings) -> None:
    """Keep ``ready_file`` present between the first completed rebalance and shutdown."""
    marker = ready_file(settings, app.conf.id, os.getpid())
    marker.unlink(missing_ok=True)  # a marker left by a killed worker with the same pid

    async def on_rebalanced(sender: object, **kwargs: object) -> None:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()

    async def on_shutdown(sender: object, **kwargs: object) -> None:
        marker.unlink(missing_ok=True)

    receivers: list[Any] = [on_rebalanced, on_shutdown]
    app.on_rebalance_complete.connect(receivers[0], weak=False)
    app.on_before_shutdown.connect(receivers[1], weak=False)


def run_faust(app: faust.App, settings: Settings) -> None:
    """Run ``app`` as a worker until SIGINT or SIGTERM; logs at WARN unless told otherwise."""
    from faust.worker import Worker

    mark_ready(app, settings)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.http_host)
    verbose = settings.log_level.upper() == "DEBUG"
    level = "debug" if verbose else "warn"
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    worker = Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()

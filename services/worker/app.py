"""Shared faust settings for omnihub's workers, their topics of raw bytes, and running one in
this process."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faust

from services.config import Settings
from services.worker.runtime import tune_gc
from services.worker.transport import App


def faust_app(app_id: str, settings: Settings, bootstrap: str, **overrides: Any) -> faust.App:
    """A faust app tuned for omnihub: short session timeout, bounded fetch wait and a least
    fetch size (``services.worker.transport``), no leader topic, no web."""
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
    return App(
        app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        fetch_min_bytes=settings.fetch_min_bytes,
        **config,
    )


def raw_topic(app: faust.App, name: str) -> Any:
    """A faust topic whose keys and values stay bytes (we validate with pydantic)."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


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


def run_faust(create: Callable[[], faust.App], settings: Settings) -> None:
    """Build an app with ``create`` and run it as a worker on uvloop until SIGINT or SIGTERM;
    logs at WARN unless told otherwise."""
    import mode.loop
    from faust.worker import Worker

    # Before the app exists (faust and mode take their loop lazily); cheaper an event than
    # asyncio's own loop (docs/design-notes.md#servicesworkerapppy).
    mode.loop.use("uvloop")
    app = create()
    mark_ready(app, settings)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.http_host)
    verbose = settings.log_level.upper() == "DEBUG"
    level = "debug" if verbose else "warn"
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    worker = Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    tune_gc()
    worker.execute_from_commandline()

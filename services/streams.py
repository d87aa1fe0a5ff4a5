"""Shared faust settings for omnihub's workers, and running one in this process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faust

from services.config import Settings


def faust_app(app_id: str, settings: Settings, bootstrap: str, **overrides: Any) -> faust.App:
    """A faust app tuned for omnihub: short session timeout, no leader topic, no web."""
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


def run_faust(app: faust.App, settings: Settings) -> None:
    """Run ``app`` as a worker until SIGINT or SIGTERM; logs at WARN unless told otherwise."""
    from faust.worker import Worker

    verbose = settings.log_level.upper() == "DEBUG"
    level = "debug" if verbose else "warn"
    for name in ("faust", "mode", "aiokafka"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    worker = Worker(app, loglevel=level, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()

"""The processors' faust app: unify, project (timeline + routing), delivery and stage agents."""

from __future__ import annotations

import faust

from services.config import Settings
from services.processors.agents import install_agents
from services.processors.shared import ProcessorResources
from services.worker.app import faust_app
from services.worker.metrics import watch_lag

APP_ID = "omnihub-processors"


def create_app(settings: Settings, bootstrap: str, database_url: str) -> faust.App:
    """Build the processors' faust app with every agent attached."""
    app = faust_app(
        APP_ID,
        settings,
        bootstrap,
        topic_partitions=8,
        stream_buffer_maxsize=max(4096, settings.batch_size * 4),
        broker_max_poll_records=max(500, settings.batch_size),
    )
    resources = ProcessorResources(settings, bootstrap, database_url, client_id=APP_ID)
    install_agents(app, resources, settings.batch_size, settings.batch_wait)
    watch_lag(app)
    app.on_before_shutdown.connect(resources.close)
    return app

"""Start whichever servers the environment does not provide; record where they are."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from services.bus.admin import ensure_topics
from services.config import Settings
from services.db.pool import migrated_pool
from services.stack.broker import EmbeddedBroker
from services.stack.postgres import EmbeddedPostgres
from services.stack.process import ChildProcess

log = logging.getLogger(__name__)


@dataclass
class Stack:
    """The broker and database in use, and the embedded ones we started (to stop later)."""

    bootstrap: str
    database_url: str
    started: list[ChildProcess] = field(default_factory=list)

    def stop(self) -> None:
        """Stop what we started, newest first."""
        while self.started:
            self.started.pop().stop()


def start_stack(settings: Settings, durable: bool = True) -> Stack:
    """Use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else start embedded servers."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        bootstrap=settings.kafka_bootstrap_servers or "", database_url=settings.database_url or ""
    )
    try:
        if not stack.bootstrap:
            broker = EmbeddedBroker(data_dir / "logs")
            broker.start()
            stack.started.append(broker)
            stack.bootstrap = broker.bootstrap
        if not stack.database_url:
            postgres = EmbeddedPostgres(data_dir / "pgdata", durable=durable)
            postgres.start()
            stack.started.append(postgres)
            stack.database_url = postgres.url
        asyncio.run(prepare(stack.bootstrap, stack.database_url))
    except BaseException:
        stack.stop()
        raise
    return stack


async def prepare(bootstrap: str, database_url: str, replication: int = 1) -> None:
    """Create the topics and apply the migrations."""
    await ensure_topics(bootstrap, replication=replication)
    pool = await migrated_pool(database_url)
    await pool.close()


def write_runtime(settings: Settings, stack: Stack, http_url: str) -> None:
    """Record the running stack in the data directory for other omnihub commands."""
    path = settings.runtime_path()
    path.write_text(
        json.dumps(
            {
                "kafka_bootstrap_servers": stack.bootstrap,
                "database_url": stack.database_url,
                "http_url": http_url,
            },
            indent=2,
        )
    )


def clear_runtime(settings: Settings) -> None:
    """Forget the running stack."""
    settings.runtime_path().unlink(missing_ok=True)

"""Start whichever servers the environment does not provide; record where they are."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from services.bus.admin import ensure_topics
from services.config import Settings
from services.db.pool import migrated_pool
from services.stack.broker import EmbeddedBroker
from services.stack.ports import stable_ports
from services.stack.postgres import EmbeddedPostgres
from services.stack.process import ChildProcess
from services.stack.s3 import EmbeddedS3

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

    def restart(self, label: str) -> subprocess.Popen[bytes]:
        """Start the embedded server ``label`` again (same port, same data) after it died;
        a broker in memory comes back empty, so the topics are created again."""
        child = next(c for c in self.started if c.label == label)
        proc = child.restart()
        if isinstance(child, EmbeddedBroker) and child.store is None:
            asyncio.run(ensure_topics(self.bootstrap))
        return proc


def embedded_broker(
    data_dir: Path, storage: Literal["durable", "memory"]
) -> tuple[EmbeddedBroker, EmbeddedS3 | None]:
    """The embedded broker and, durable, the S3 store under it (not started), on the ports
    of the last run in ``data_dir`` while they are free; the store keeps its data in
    ``<data_dir>/broker/s3``."""
    root = data_dir / "broker"
    store = EmbeddedS3(root, data_dir / "logs") if storage == "durable" else None
    port = stable_ports(root / "ports.json", ["kafka"])["kafka"]
    return EmbeddedBroker(data_dir / "logs", port=port, store=store), store


def start_stack(settings: Settings, durable: bool = True) -> Stack:
    """Use KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set, else start embedded servers.

    ``durable=False`` (the test suite, the benchmark) trades durability for speed: PostgreSQL
    without fsync and the broker in memory, whatever OMNIHUB_BROKER_STORAGE says."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        bootstrap=settings.kafka_bootstrap_servers or "", database_url=settings.database_url or ""
    )
    try:
        if not stack.bootstrap:
            broker, store = embedded_broker(
                data_dir, settings.broker_storage if durable else "memory"
            )
            for server in (store, broker):
                if server is not None:
                    server.start()
                    stack.started.append(server)
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

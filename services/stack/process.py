"""A supervised child process: started, waited on until ready, stopped with no leftovers."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class ChildProcess:
    """Base of the embedded servers: own process group, log file, clean stop, restart."""

    label = "child"
    stop_signal = signal.SIGTERM
    #: Seconds ``stop`` waits after ``stop_signal`` before it kills the process group.
    stop_timeout = 15.0
    #: Whether running out of ``stop_timeout`` is worth a warning (not for a server whose
    #: graceful stop is known to be slow and whose writes are safe from a kill).
    warn_on_kill = True

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
        command = self._command()  # first: it may find its executable missing
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_file, "ab")
        self.proc = subprocess.Popen(  # noqa: S603 - our own fixed command line
            command,
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

    def restart(self) -> subprocess.Popen[bytes]:
        """Start again with the same settings (ports, data) after the process died or was
        stopped: what is left of the old process group is killed first. Returns the new
        process."""
        self.stop()
        self.start()
        assert self.proc is not None
        return self.proc

    def stop(self, timeout: float | None = None) -> None:
        """Stop the process (then its group), killing it if it does not exit in time."""
        timeout = self.stop_timeout if timeout is None else timeout
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(self.stop_signal)
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                level = logging.WARNING if self.warn_on_kill else logging.INFO
                log.log(level, "%s did not stop in %ss; killing it", self.label, timeout)
                _kill_group(proc.pid, timeout=0)  # then reap it, before waiting for the rest
                proc.wait(5)
        if proc is not None:
            _kill_group(proc.pid)
        if self._log is not None:
            self._log.close()
            self._log = None


def _kill_group(pgid: int, timeout: float = 3.0) -> None:
    """SIGKILL a process group and wait (at most ``timeout`` s) until it is gone: a server
    started again at once must not meet what is left of its predecessor (a port, a lock)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)

"""`omnihub up`: the embedded stack plus every component as a supervised child process."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.config import Settings
from services.stack.embedded import clear_runtime, start_stack, write_runtime
from services.worker.app import ready_file

log = logging.getLogger(__name__)

#: The components `omnihub up` runs, in start order (stopped in reverse).
COMPONENTS = ("processors", "dispatcher", "api")
#: The faust app id of each stream component, to find its ready file.
WORKER_APPS = {"processors": "omnihub-processors", "dispatcher": "omnihub-dispatcher"}
#: A component (or embedded server) that exits is restarted after min(MAX_BACKOFF, 2**n)
#: seconds, n being its restarts in a row; one that had run HEALTHY_AFTER seconds before it
#: exited starts again at n = 1 (2 s).
MAX_BACKOFF = 30.0
HEALTHY_AFTER = 60.0
#: How often the supervisor looks at its children.
TICK = 0.5


@dataclass
class Component:
    """One supervised child (`omnihub run <name>`, or an embedded server by its label), its
    restarts in a row and its pending restart."""

    name: str
    proc: subprocess.Popen[bytes] | None = None
    #: Restarts in a row (back to 0 once the component has run HEALTHY_AFTER seconds).
    restarts: int = 0
    #: Restarts since `omnihub up` started.
    total_restarts: int = 0
    #: When (time.monotonic()) the current process was started.
    started_at: float = 0.0
    #: When an exited component is due to be started again (None: it is not waiting).
    restart_at: float | None = None


def watch_once(
    components: list[Component],
    start: Callable[[str], subprocess.Popen[bytes]],
    now: float,
) -> None:
    """One look at every component: note exits, schedule restarts, start those that are due.

    Never waits out a back-off: a component waiting for its restart does not delay noticing
    the others (starting an embedded server does block until it is ready, a few seconds). A
    start that fails counts as an exit.
    """
    for component in components:
        if component.restart_at is not None:
            if now >= component.restart_at:
                component.restart_at = None
                component.started_at = now
                try:
                    component.proc = start(component.name)
                except Exception as error:
                    component.proc = None
                    _back_off(component, now, f"failed to start ({error!r})")
            continue
        if component.proc is None or component.proc.poll() is None:
            continue
        _back_off(component, now, f"exited with {component.proc.returncode}")


def _back_off(component: Component, now: float, what: str) -> None:
    """Schedule the next start of a component that exited or failed to start."""
    if now - component.started_at >= HEALTHY_AFTER:
        component.restarts = 0  # it ran healthily: a new failure starts the back-off anew
    component.restarts += 1
    component.total_restarts += 1
    delay = min(MAX_BACKOFF, 2.0**component.restarts)
    component.restart_at = now + delay
    log.error(
        "%s %s; restarting in %gs (%d in a row, %d in all)",
        component.name,
        what,
        delay,
        component.restarts,
        component.total_restarts,
    )


def watch(
    components: list[Component],
    start: Callable[[str], subprocess.Popen[bytes]],
    stopping: threading.Event,
    clock: Callable[[], float] = time.monotonic,
    tick: float = TICK,
) -> None:
    """Restart components that exit, with per-component back-off, until ``stopping`` is set."""
    while not stopping.wait(tick):
        watch_once(components, start, clock())


def spawn(name: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    """Start `omnihub run <name>` in its own session (output to ``log`` when given)."""
    out = open(log, "ab") if log else None
    return subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "services.cli", "run", *name.split()],
        env=env,
        start_new_session=True,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
    )


def stop(proc: subprocess.Popen[bytes] | None, name: str, timeout: float = 20.0) -> None:
    """SIGTERM a component; kill its process group if it has not stopped in ``timeout`` s."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("%s did not stop in %ss; killing it", name, timeout)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def _wait_until_ready(
    settings: Settings,
    components: list[Component],
    stopping: threading.Event,
    timeout: float = 120.0,
    meanwhile: Callable[[], object] = lambda: None,
) -> None:
    """Block until the API answers /readyz and every worker holds its partitions, calling
    ``meanwhile`` (the embedded servers' watch) between looks."""
    deadline = time.monotonic() + timeout
    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
    url = f"http://{host}:{settings.http_port}/readyz"
    pending = {c.name for c in components}
    while pending and time.monotonic() < deadline and not stopping.is_set():
        for component in components:
            if component.name not in pending or component.proc is None:
                continue
            if component.proc.poll() is not None:
                raise RuntimeError(f"{component.name} exited during start-up")
            if component.name in WORKER_APPS:
                marker = ready_file(settings, WORKER_APPS[component.name], component.proc.pid)
                ok = marker.exists()
            else:
                ok = _http_ok(url)
            if ok:
                pending.discard(component.name)
        meanwhile()
        stopping.wait(0.1)
    if pending and not stopping.is_set():
        log.warning("not ready after %ss: %s", timeout, ", ".join(sorted(pending)))


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except OSError:
        return False


def component_env(settings: Settings, bootstrap: str, database_url: str) -> dict[str, str]:
    """The environment `omnihub up` starts its components with: its own, pointed at the
    embedded servers, with the API's /docs and /openapi.json on (development) unless the
    environment sets OMNIHUB_API_DOCS."""
    return dict(
        {"OMNIHUB_API_DOCS": "true", **os.environ},
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        DATABASE_URL=database_url,
        OMNIHUB_DATA_DIR=str(settings.data_dir.resolve()),
    )


def up(settings: Settings, out: Callable[[str], object] | None = None) -> int:
    """Run everything until SIGINT/SIGTERM; then stop components, then servers. Returns 0."""
    print_: Callable[[str], object] = print if out is None else out
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    stack = start_stack(settings)
    # The embedded servers are watched with the same back-off, and restarted before the
    # components (start order: the broker's S3 store, the broker, PostgreSQL).
    servers = [
        Component(child.label, proc=child.proc, started_at=time.monotonic())
        for child in stack.started
    ]
    labels = {server.name for server in servers}
    components = [Component(name) for name in COMPONENTS]
    http_url = f"http://{settings.http_host}:{settings.http_port}"
    try:
        env = component_env(settings, stack.bootstrap, stack.database_url)
        write_runtime(settings, stack, http_url)

        def start(name: str) -> subprocess.Popen[bytes]:
            return stack.restart(name) if name in labels else spawn(name, env)

        for component in components:
            component.proc = spawn(component.name, env)
            component.started_at = time.monotonic()
        _wait_until_ready(
            settings,
            components,
            stopping,
            meanwhile=lambda: watch_once(servers, start, time.monotonic()),
        )
        print_(
            f"omnihub is up: {http_url}  (Kafka {stack.bootstrap}; PostgreSQL {stack.database_url})"
        )
        print_("create a token: omnihub token create --role integration   |   Ctrl-C stops")
        watch(servers + components, start, stopping)
    finally:
        print_("stopping omnihub ...")
        for component in reversed(components):
            stop(component.proc, component.name)
        stack.stop()
        clear_runtime(settings)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        print_("stopped")
    return 0

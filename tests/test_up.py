"""`omnihub up` on a fresh data directory: prints the URL, works, and Ctrl-C leaves nothing
(the durable broker's S3 store included)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from services.stack.ports import free_port
from tests.support import ROOT, unique


def _read_url(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise AssertionError(f"omnihub up exited with {proc.returncode}")
        match = re.search(r"omnihub is up: (http://\S+)", line)
        if match:
            return match.group(1)
    raise AssertionError("omnihub up printed no URL")


def test_up_runs_everything_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}
    }
    env.update(
        OMNIHUB_DATA_DIR=str(tmp_path / "data"),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_LOG_LEVEL="WARNING",
        COLUMNS="200",
    )
    env.pop("X_ENABLED", None)  # X as shipped: off, so `omnihub up` leaves it out
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    family: list[psutil.Process] = []
    try:
        url = _read_url(proc)
        assert url == f"http://127.0.0.1:{port}"
        assert (tmp_path / "data" / "runtime.json").exists()
        token = (
            subprocess.run(
                [
                    *(sys.executable, "-m", "services.cli", "token", "create"),
                    *("--role", "integration", "--scope", "customers:read"),
                ],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        headers = {"authorization": f"Bearer {token}"}
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            _wait_ready(http)
            checks = http.get("/readyz").json()["checks"]
            assert "channel:x" not in checks and "channel:twilio" in checks
            assert http.get("/channels/x/webhook", params={"crc_token": "a"}).status_code == 404
            for attempt in range(3):
                email = f"{unique('up')}@example.com"
                started = time.monotonic()
                posted = http.post(
                    "/v1/interactions",
                    json={
                        "channel": "api",
                        "direction": "inbound",
                        "kind": "visit",
                        "identities": [{"type": "email", "value": email}],
                        "text": "Visited the Lyon store",
                        "provider_message_id": unique("visit"),
                    },
                )
                assert posted.status_code == 202, posted.text
                item = _wait_for_timeline(http, email)
                print(f"#{attempt} accepted -> in timeline: {time.monotonic() - started:.3f}s")
                assert item["event_id"] == posted.json()["event_id"]
                assert item["kind"] == "visit"
        family = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(p.cmdline()) for p in family)
        # weed: the S3 store under the broker (durable, OMNIHUB_BROKER_STORAGE's default)
        servers = ("tansu", "bin/weed", "postgres")
        for expected in (*servers, "run processors", "run dispatcher", "run api"):
            assert expected in names, f"{expected} not running under omnihub up"
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, _ = proc.communicate(timeout=90)
    assert proc.returncode == 0, out
    assert "stopped" in out
    _, alive = psutil.wait_procs(family, timeout=10)
    assert not alive, f"left running: {[p.pid for p in alive]}"
    assert not (tmp_path / "data" / "runtime.json").exists()


def _wait_ready(http: httpx.Client, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("API never became ready")


def _wait_for_timeline(http: httpx.Client, email: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = http.get("/v1/customers", params={"identity": f"email:{email}"}).json()
        if found["customers"]:
            page = http.get(f"/v1/customers/{found['customers'][0]['id']}/timeline").json()
            if page["items"]:
                return page["items"][0]
        time.sleep(0.05)
    raise AssertionError("interaction never reached the timeline")

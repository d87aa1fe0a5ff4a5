"""`omnihub bench` runs as a real command and accounts for every event (no timing asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.support import ROOT


def test_the_latency_phase_reports_every_event_once() -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}  # its own embedded stack
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", "--latency-only", "--rate", "100"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    latency = report["latency_at_fixed_load"]
    assert latency["offered_per_second"] == 100
    assert latency["workers"] == 1  # as `make up` deploys the hub: one of each component
    assert latency["ingress"]["statuses"] == {"202": 1000}
    for measure in ("acceptance_to_timeline_commit", "acceptance_to_department_topic"):
        spread = latency[measure]
        assert spread["n"] == 1000
        assert 0 < spread["p50_ms"] <= spread["p95_ms"] <= spread["p99_ms"]
    # every process's share of the work is reported, and each of them did some
    cpu = latency["cpu_us_per_event"]
    assert set(cpu) == {"broker", "database", "api", "processors", "load_generator"}
    assert all(used > 0 for used in cpu.values()), cpu
    assert report["correctness"] == {
        "events_sent": 1500,  # 500 to warm up, then 10 s at 100/s
        "lost_from_timeline": 0,
        "lost_from_department_topics": 0,
        "duplicated_on_department_topics": 0,
    }
    assert set(report["peak_memory_mb"]) == {"api", "processors"}
    assert "processors_backlog" not in report

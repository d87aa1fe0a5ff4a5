"""`omnihub bench` runs as a real command and accounts for every event (no timing asserted)."""

from __future__ import annotations

import sys

import pytest

from services.bench.measure import machine_times, steal_share
from tests.support import bench_report


def test_the_latency_phase_reports_every_event_once() -> None:
    report = bench_report("--latency-only", "--rate", "100")
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
    # how much of the machine its hypervisor gave others meanwhile (Linux reports it)
    stolen = report["machine"]["cpu_steal_share"]
    assert stolen is None if sys.platform != "linux" else 0 <= stolen < 1


@pytest.mark.skipif(sys.platform != "linux", reason="only Linux reports steal time")
def test_steal_share_is_the_hypervisor_s_part_of_the_machine_s_time() -> None:
    before = dict.fromkeys(machine_times(), 10.0)  # user, system, idle, steal and the rest
    after = {**before, "user": 13.0, "idle": 16.0, "steal": 11.0}  # 3 + 6 + 1 s passed
    assert steal_share(before, after) == 0.1
    assert steal_share(before, before) is None  # no time passed

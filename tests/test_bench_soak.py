"""`omnihub bench --soak`: a short soak through real processes reports every figure and
accounts for every accepted event; its arithmetic (slices, trend, growth, verdict) on
hand-made inputs. No timing asserted."""

from __future__ import annotations

import subprocess
import sys

import psutil

from services.bench.run import Options
from services.bench.soak import (
    growth,
    p99_trend,
    rss_mb,
    slice_seconds,
    slices,
    steps,
    verdict,
    warm_up_seconds,
)
from tests.support import bench_report


def test_a_short_soak_reports_memory_latency_over_time_and_every_event_once() -> None:
    report = bench_report(
        *("--latency-only", "--rate", "100", "--customers", "200"),
        *("--soak", "0.25", "--soak-rate", "100"),
    )
    assert "latency_at_fixed_load" in report  # the phase the flag keeps still runs
    assert "end_to_end_saturation" not in report
    soak = report["soak"]
    assert soak["minutes"] == 0.25
    assert soak["capacity"]["from"] == "soak_rate"
    assert soak["offered_per_second"] == 100
    # 15 s at 100/s, through both ingress paths, every request answered with a 2xx
    requests = soak["requests"]
    assert requests["api_channel"] > 0 and requests["twilio_signed_webhooks"] > 0
    assert requests["api_channel"] + requests["twilio_signed_webhooks"] == 1500
    assert soak["ingress"]["statuses"] == {
        "200": requests["twilio_signed_webhooks"],
        "202": requests["api_channel"],
    }
    assert soak["correctness"] == {
        "accepted": 1500,
        "not_accepted": 0,
        "lost_from_timeline": 0,
        "lost_from_department_topics": 0,
        "duplicated_on_department_topics": 0,
    }
    # the latency phase's own count is not mixed with the soak's
    assert report["correctness"]["events_sent"] == 1500
    # memory of every process, after the warm-up and at the end
    assert soak["warm_up_s"] == 1.5
    memory = soak["memory_mb"]
    assert set(memory) == {"api", "processors", "broker", "database"}
    for name, figures in memory.items():
        assert figures["start_mb"] > 0 and figures["end_mb"] > 0, name
        assert isinstance(figures["growth_pct"], float), name
    # latency per slice: ten slices of 1.5 s holding every event, and their trend
    assert soak["slice_s"] == 1.5
    sliced = soak["slices"]
    assert len(sliced) == 10
    assert sum(s["n"] for s in sliced) == 1500
    for piece in sliced:
        assert piece["n"] > 0
        assert 0 < piece["p50_ms"] <= piece["p95_ms"] <= piece["p99_ms"]
        assert set(piece["rss_mb"]) == set(memory)
    assert sliced[-1]["to_s"] == 15
    assert soak["p99_trend"] == round(sliced[-1]["p99_ms"] / sliced[0]["p99_ms"], 2)
    assert all(used > 0 for used in soak["cpu_us_per_event"].values())
    judged = soak["verdict"]
    assert judged["memory_judged_on"] == ["api", "processors"]
    assert judged["nothing_lost_or_duplicated"] is True
    assert judged["as_long_as_the_target"] is False
    assert judged["met"] is False  # a quarter of a minute is not the 20


def test_warm_up_and_slices_scale_with_the_soak() -> None:
    assert warm_up_seconds(20 * 60) == 60  # the first minute of a long soak
    assert warm_up_seconds(180) == 18  # 10 % of a short one
    assert slice_seconds(20 * 60) == 60  # a slice a minute
    assert slice_seconds(10 * 60) == 60
    assert slice_seconds(180) == 18  # ten slices for short soaks


def test_slices_group_latencies_by_acceptance_time() -> None:
    start = 1_000.0
    points = [
        (999.9, 0.5),  # accepted a moment before the clock started: the first slice
        (1_000.5, 0.1),
        (1_001.9, 0.3),
        (1_004.0, 0.2),
        (1_019.0, 0.4),
        (1_021.0, 0.9),  # due before the end, accepted after it: the last slice
    ]
    sliced = slices(points, start, 20)  # ten slices of 2 s
    assert len(sliced) == 10
    assert [s["n"] for s in sliced] == [3, 0, 1, 0, 0, 0, 0, 0, 0, 2]
    assert (sliced[0]["from_s"], sliced[0]["to_s"]) == (0, 2)
    assert (sliced[-1]["from_s"], sliced[-1]["to_s"]) == (18, 20)
    assert sliced[0]["p50_ms"] == 300 and sliced[0]["p99_ms"] == 500
    assert sliced[-1]["p99_ms"] == 900
    assert sliced[1] == {"from_s": 2, "to_s": 4, "p50_ms": 0, "p95_ms": 0, "p99_ms": 0, "n": 0}


def test_p99_trend_is_the_last_slice_with_events_over_the_first() -> None:
    sliced = [
        {"n": 0, "p99_ms": 0.0},
        {"n": 10, "p99_ms": 100.0},
        {"n": 12, "p99_ms": 400.0},
        {"n": 9, "p99_ms": 150.0},
        {"n": 0, "p99_ms": 0.0},
    ]
    assert p99_trend(sliced) == 1.5
    assert p99_trend(sliced[:2]) is None  # one slice: no trend


def test_growth_is_per_process_in_percent_of_the_start() -> None:
    start = {"api": 100.0, "processors": 200.0, "gone": 50.0, "empty": 0.0}
    end = {"api": 112.0, "processors": 190.0, "empty": 5.0}
    assert growth(start, end) == {
        "api": {"start_mb": 100.0, "end_mb": 112.0, "growth_pct": 12.0},
        "processors": {"start_mb": 200.0, "end_mb": 190.0, "growth_pct": -5.0},
        "empty": {"start_mb": 0.0, "end_mb": 5.0, "growth_pct": None},
    }


def test_the_verdict_judges_the_hub_s_own_processes_over_the_target_s_length() -> None:
    memory = {
        "api": {"growth_pct": 9.9},
        "processors": {"growth_pct": 2.0},
        "broker": {"growth_pct": 60.0},  # the embedded broker keeps its log in memory
    }
    judged = ["api", "processors"]
    met = verdict(20, memory, judged, 1.5, 0, 0)
    assert met["memory_growth_under_limit"] and met["p99_flat"]
    assert met["nothing_lost_or_duplicated"] and met["as_long_as_the_target"]
    assert met["met"] is True
    assert verdict(3, memory, judged, 1.5, 0, 0)["met"] is False  # too short to tell
    assert verdict(20, memory, judged, 1.51, 0, 0)["p99_flat"] is False
    assert verdict(20, memory, judged, None, 0, 0)["p99_flat"] is False
    assert verdict(20, memory, judged, 1.0, 1, 0)["nothing_lost_or_duplicated"] is False
    assert verdict(20, memory, judged, 1.0, 0, 1)["met"] is False
    grown = {**memory, "processors": {"growth_pct": 10.0}}
    assert verdict(20, grown, judged, 1.0, 0, 0)["memory_growth_under_limit"] is False


def test_memory_of_a_process_includes_its_children() -> None:
    script = (
        "import subprocess, sys, time;"
        " subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        " print('started', flush=True); time.sleep(60)"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    children: list[psutil.Process] = []
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"started\n"
        children = psutil.Process(parent.pid).children()
        assert len(children) == 1
        alone = psutil.Process(parent.pid).memory_info().rss / 2**20
        family = rss_mb({"family": [parent.pid]})["family"]
        assert family > alone * 1.5  # the child's interpreter counted too
    finally:
        for proc in (*children, psutil.Process(parent.pid)):
            proc.kill()
        parent.wait()
        parent.stdout.close()
    assert rss_mb({"gone": [parent.pid]}) == {"gone": 0}  # an ended process counts nothing


def test_the_soak_is_off_unless_asked_for() -> None:
    assert steps(Options()) == 0
    assert steps(Options(soak_minutes=3)) == 2
    assert steps(Options(soak_minutes=3, latency_only=True)) == 3  # capacity measured first
    assert steps(Options(soak_minutes=3, latency_only=True, soak_rate=200)) == 2

"""`omnihub bench`'s web chat section at a tiny size on its own stack: every connection is held
to the end, every acked message reaches the timeline once, every agent's reply reaches its
visitor's socket once (no timing asserted)."""

from __future__ import annotations

from services.bench.webchat import REPLY_SECONDS, REPLY_WARM_UP
from tests.support import bench_report


def test_every_message_and_reply_arrives_once() -> None:
    connections, messages, rate = 12, 48, 5
    report = bench_report(
        "--webchat-only",
        "--events",
        "200",
        "--customers",
        "50",
        "--webchat-connections",
        str(connections),
        "--webchat-hold",
        "2",
        "--webchat-messages",
        str(messages),
        "--webchat-reply-rate",
        str(rate),
    )
    chat = report["webchat"]
    held = chat["connections"]
    assert (held["offered"], held["opened"], held["failed"]) == (connections, connections, {})
    assert held["still_open_after_hold"] == connections
    assert held["acked"] == connections and held["refused"] == {}  # one message each
    process = held["web_process"]
    assert process["opened"]["fds"] >= process["before"]["fds"] + connections
    acks = chat["acks"]
    assert (acks["messages"], acks["acked"], acks["refused"]) == (messages, messages, {})
    assert acks["connections_held"] == connections
    assert {"webchat", "load_generator"} <= set(acks["cpu_us_per_message"])
    replies = chat["replies"]
    count = round(rate * REPLY_SECONDS)
    assert (replies["replies"], replies["queued"], replies["not_queued"]) == (count, count, {})
    assert replies["queued_to_visitor_socket"]["n"] == count
    assert replies["connections_held"] == connections
    assert chat["correctness"] == {
        "messages_acked": connections + messages,
        "messages_refused": 0,
        "lost_from_timeline": 0,
        "lost_from_department_topics": 0,
        "duplicated_on_department_topics": 0,
        "replies_queued": REPLY_WARM_UP + count,
        "replies_lost_from_sockets": 0,
        "replies_duplicated_on_sockets": 0,
        "replies_missing_from_conversation_log": 0,
    }
    targets = chat["targets"]
    plain = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
    assert targets["plain_aiokafka_loop_events_per_second"] == plain
    assert targets["nothing_lost_or_duplicated"] is True
    assert {type(targets[k]) for k in targets if k.endswith("_met") or "_met_" in k} == {bool}
    assert set(report["peak_memory_mb"]) >= {"webchat", "processors", "dispatcher"}
    assert "email" not in report and "latency_at_fixed_load" not in report  # web chat alone

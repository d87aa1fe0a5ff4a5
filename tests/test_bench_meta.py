"""`omnihub bench`'s Meta section: its webhooks are what Meta sends, signed, and at a tiny size
on its own stack every accepted entry is staged once and reaches the timeline once (no timing
asserted)."""

from __future__ import annotations

from channels.base import InboundRequest
from channels.meta.parse import parse_body
from channels.meta.verify import check_signature
from schemas import Channel, Interaction
from schemas.events import utcnow
from services.bench import data
from services.bench.meta_webhooks import APP_SECRET, WARM_UP, mids_of, webhooks
from tests.support import bench_report


def test_the_webhooks_are_signed_and_read_as_meta_s_with_unique_message_ids() -> None:
    crowd = data.people(10, 0.3, 1)
    single = webhooks(20, 1, crowd, 2, "s")
    batched = webhooks(4, 50, crowd, 3, "b")
    kinds = []
    for hook in [*single, *batched]:
        request = InboundRequest(
            method="POST",
            url="/channels/meta/webhook",
            headers={"x-hub-signature-256": hook.signature},
            body=hook.body,
        )
        check_signature(request, APP_SECRET.encode())  # raises unless signed with the secret
        assert b"/" not in hook.body.replace(b"\\/", b"")  # escaped, as Meta sends it
        parsed = parse_body(hook.body, utcnow())
        assert not parsed.unusable and not parsed.fetches
        events = [e for e in parsed.events if isinstance(e, Interaction)]
        assert [e.event_id for e in events] == hook.event_ids
        assert all(e.text for e in events)
        assert mids_of(hook.body) == [mid for _, mid in hook.entries]
        kinds.append({e.channel for e in events})
    assert kinds[:20] == [{Channel.MESSENGER}] * 20
    assert kinds[20:] == [{Channel.MESSENGER}, {Channel.WHATSAPP}] * 2
    assert [len(h.entries) for h in batched] == [50] * 4
    every = [mid for hook in [*single, *batched] for _, mid in hook.entries]
    assert len(set(every)) == len(every) == 220


def test_every_accepted_entry_is_staged_and_reaches_the_timeline_once() -> None:
    single, batched, entries = 30, 4, 5
    report = bench_report(
        "--meta-only",
        "--events",
        "200",
        "--customers",
        "50",
        "--meta-requests",
        str(single),
        "--meta-batched-requests",
        str(batched),
        "--meta-batch",
        str(entries),
    )
    meta = report["meta"]
    for name, count, each in (("single", single, 1), ("batched", batched, entries)):
        load = meta[name]
        assert (load["requests"], load["accepted"], load["entries_a_request"]) == (
            count,
            count,
            each,
        ), name
        assert load["statuses"] == {"200": count} and load["errors"] == 0, name
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"], name
        per_request = load["entries_per_second"] / load["requests_per_second"]
        assert abs(per_request - each) < 0.01, name
        assert {"meta", "broker", "load_generator"} <= set(load["cpu_us_per_entry"]), name
        assert "processors" not in load["cpu_us_per_request"], name  # stopped meanwhile
    assert meta["correctness"] == {
        "requests_accepted": WARM_UP + single + batched,
        "requests_not_accepted": 0,
        "entries_accepted": WARM_UP + single + batched * entries,
        "lost_from_staged_topic": 0,
        "duplicated_on_staged_topic": 0,
        "lost_from_timeline": 0,
        "lost_from_department_topics": 0,
        "duplicated_on_department_topics": 0,
    }
    targets = meta["targets"]
    assert (targets["requests_per_second"], targets["entries_per_second"]) == (2_000, 20_000)
    plain = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
    assert targets["plain_aiokafka_loop_events_per_second"] == plain
    assert targets["nothing_lost_or_duplicated"] is True
    assert {type(targets[k]) for k in targets if k.endswith("_met") or "_met_" in k} == {bool}
    assert set(report["peak_memory_mb"]) == {"meta", "processors"}
    assert "email" not in report and "latency_at_fixed_load" not in report  # Meta alone

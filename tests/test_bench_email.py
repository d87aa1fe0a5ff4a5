"""`omnihub bench`'s email section: its messages are the mail the issue describes, and at a tiny
size on its own stack every message answered 250 reaches the timeline once (no timing asserted)."""

from __future__ import annotations

from channels.email.mime import parse
from services.bench import data
from services.bench.email_ingress import ATTACHMENT_BYTES, WARM_UP, messages
from tests.support import bench_report


def test_the_load_is_realistic_multipart_mail_each_with_its_own_message_id() -> None:
    mails = messages(50, data.people(10, 0.3, 1), 2, "t")
    assert len({m.message_id for m in mails}) == 50
    for mail in mails:
        assert 10_000 <= len(mail.raw) <= 20_000
        assert b"\r\n" in mail.raw and b"\n" not in mail.raw.replace(b"\r\n", b"")
        parsed = parse(mail.raw)
        assert parsed.message_id == mail.message_id
        assert parsed.from_address == mail.sender and parsed.to == (mail.recipient,)
        assert parsed.text.startswith("Hello,") and parsed.html is not None
        (attachment,) = parsed.attachments
        assert attachment.content_type == "application/pdf"
        assert attachment.size == ATTACHMENT_BYTES
        assert parsed.authentication == {"dkim": "pass", "spf": "pass", "dmarc": "pass"}


def test_every_accepted_message_reaches_the_timeline_once() -> None:
    count = 30
    report = bench_report(
        "--email-only",
        "--events",
        "200",
        "--customers",
        "50",
        "--email-messages",
        str(count),
        "--email-connections",
        "3",
    )
    email = report["email"]
    assert email["connections"] == 3
    smtp = {
        "bare_aiosmtpd": email["bare_aiosmtpd"],
        "accepted": email["accepted"],
        "to_timeline": email["to_timeline"]["smtp"],
    }
    for name, load in smtp.items():
        assert load["messages"] == count, name
        assert load["statuses"] == {"250": count}, name
        assert load["errors"] == 0, name
        assert 0 < load["p50_ms"] <= load["p95_ms"] <= load["p99_ms"], name
    server = {"bare_aiosmtpd": "bare_aiosmtpd", "accepted": "email", "to_timeline": "email"}
    for name, load in smtp.items():  # the server's CPU and the load generator's, each used some
        assert set(load["cpu_us_per_message"]) == {server[name], "load_generator"}, name
        assert all(used > 0 for used in load["cpu_us_per_message"].values()), name
    assert email["to_timeline"]["workers"] == 1
    assert email["correctness"] == {
        "accepted": WARM_UP + 2 * count,  # the warm-up, then `accepted` and `to_timeline`
        "not_accepted": 0,
        "lost_from_timeline": 0,
        "lost_from_department_topics": 0,
        "duplicated_on_department_topics": 0,
    }
    targets = email["targets"]
    assert targets["per_second"] == 500 and targets["share_of_bare"] == 0.5
    plain = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
    assert targets["plain_aiokafka_loop_events_per_second"] == plain
    assert {type(targets[k]) for k in targets if k.endswith("_met") or "_met_" in k} == {bool}
    assert set(report["peak_memory_mb"]) == {"email", "processors"}
    assert "latency_at_fixed_load" not in report  # the email section alone

"""A timeline item as the console shows it: the reply a crash may have sent twice says so."""

from __future__ import annotations

from typing import Any

from services.console.render import ENV
from services.console.timeline import group, item_view
from services.dispatcher.send import MAYBE_TWICE


def raw_reply() -> dict[str, Any]:
    """A timeline item of an outbound SMS as the customers store returns it."""
    return {
        "event_id": "3f0c9d2e-0000-4000-8000-000000000001",
        "occurred_at": "2026-12-07T10:00:00+00:00",
        "channel": "sms",
        "direction": "outbound",
        "kind": "message",
        "department": None,
        "language": "en",
        "subject": None,
        "text": "We refunded your invoice",
        "identities": [{"type": "phone", "scope": "", "value": "+33612345678"}],
        "attachments": [],
        "delivery": {"state": "sent", "error_code": None, "error": None},
        "thread_id": None,
    }


def render(attributes: dict[str, Any]) -> str:
    return ENV.get_template("item.html").render(it=item_view(raw_reply(), attributes))


def test_a_reply_that_may_have_been_sent_twice_says_so() -> None:
    assert "may have been sent twice" in render({MAYBE_TWICE: True})
    assert "may have been sent twice" not in render({})
    # only the dispatcher's own flag counts: an attribute a caller set to a string does not
    assert "may have been sent twice" not in render({MAYBE_TWICE: "true"})
    inbound = dict(raw_reply(), direction="inbound")
    shown = ENV.get_template("item.html").render(it=item_view(inbound, {MAYBE_TWICE: True}))
    assert "may have been sent twice" not in shown


def test_a_message_sent_in_place_of_a_chat_and_its_answers_join_the_chat() -> None:
    def item(n: int, channel: str, direction: str, **extra: Any) -> dict[str, Any]:
        raw = dict(
            raw_reply(),
            event_id=f"3f0c9d2e-0000-4000-8000-00000000000{n}",
            occurred_at=f"2026-12-07T10:0{n}:00+00:00",
            channel=channel,
            direction=direction,
            thread_id=extra.pop("thread_id", None),
        )
        return item_view(raw, extra)

    chat_question = item(1, "webchat", "inbound")
    chat_reply = item(2, "webchat", "outbound")
    # the reply, unseen, went by email answering it; the customer answered by email in its thread
    by_email = item(3, "email", "outbound", thread_id="t1", in_reply_to=chat_reply["event_id"])
    answer = item(4, "email", "inbound", thread_id="t1")
    elsewhere = item(5, "email", "inbound", thread_id="t2")
    conversations = group([chat_question, chat_reply, by_email, answer, elsewhere])
    assert [[i["event_id"] for i in c.items] for c in conversations] == [
        [elsewhere["event_id"]],
        [i["event_id"] for i in (chat_question, chat_reply, by_email, answer)],
    ]

"""A timeline item as the console shows it: the reply a crash may have sent twice says so."""

from __future__ import annotations

from typing import Any

from services.console.render import ENV
from services.console.timeline import item_view
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

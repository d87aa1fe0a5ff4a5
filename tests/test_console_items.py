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


def social(n: int, direction: str = "inbound", **extra: Any) -> dict[str, Any]:
    """A Messenger item as the customers store returns it."""
    return dict(
        raw_reply(),
        event_id=f"3f0c9d2e-0000-4000-8000-00000000001{n}",
        occurred_at=f"2026-12-07T10:1{n}:00+00:00",
        channel="messenger",
        direction=direction,
        identities=[{"type": "facebook", "scope": "682498302938465", "value": "4711"}],
        delivery=None,
        provider_message_id=f"m_{n}",
        **extra,
    )


def test_a_reaction_shows_on_the_message_it_reacts_to_not_as_a_message() -> None:
    message = item_view(social(1, text="Here is my order"), {"sender_name": "Ada"})
    heart = item_view(
        social(2, text="❤"), {"reaction": "❤", "reaction_to": "m_1", "reaction_action": "react"}
    )
    other = item_view(
        social(3, text="👍"),
        {"reaction": "👍", "reaction_to": "m_gone", "reaction_action": "react"},
    )
    [conversation] = group([message, heart, other])
    assert [i["event_id"] for i in conversation.items] == [message["event_id"], other["event_id"]]
    assert message["reactions"] == [{"emoji": "❤", "by": "the customer"}]
    shown = ENV.get_template("item.html").render(it=message)
    assert "❤ by the customer" in shown and 'data-reactions="❤"' in shown
    # a reaction to a message not shown is a small item of its own, not a message
    small = ENV.get_template("item.html").render(it=other)
    assert "👍 reaction to a message not shown here" in small and 'class="text"' not in small

    # taken back: the message shows none (and changes, so the page re-renders it)
    again = item_view(social(1, text="Here is my order"), {})
    undone = item_view(
        social(4, text=None), {"reaction": None, "reaction_to": "m_1", "reaction_action": "unreact"}
    )
    heart = item_view(
        social(2, text="❤"), {"reaction": "❤", "reaction_to": "m_1", "reaction_action": "react"}
    )
    group([again, heart, undone])
    assert again["reactions"] == [] and again["reactions_key"] == "-"


def test_an_echo_from_the_platform_app_handle_images_and_missing_media() -> None:
    echo = item_view(social(1, "outbound", text="We are open"), {"sent_from": "meta"})
    assert echo["sent_from"] == "Sent from the Messenger app, not from the hub"
    assert "Sent from the Messenger app, not from the hub" in render_item(echo)
    # the customer saying where a message came from says nothing about our sending
    assert item_view(social(2, text="hi"), {"sent_from": "meta"})["sent_from"] is None

    who = item_view(social(3), {"sender_name": "Ada L", "username": "ada"})
    assert '<span class="sender-handle">@ada</span>' in render_item(who)

    files = [
        {"name": "photo.jpg", "content_type": "image/jpeg", "size": 10, "blob": "e/1"},
        {"name": "x.svg", "content_type": "image/svg+xml", "size": 10, "blob": "e/2"},
        {"name": "clip.mp4", "content_type": "video/mp4", "size": None},
    ]
    shown = item_view(social(4, attachments=files), {"media_unavailable": "Meta said 404"})
    [photo, svg, clip] = shown["attachments"]
    event = shown["event_id"]
    assert photo["image"] == f"/console/messages/{event}/images/1"
    assert svg["image"] is None and svg["url"] == f"/console/messages/{event}/files/2"
    assert clip["image"] is None and clip["url"] is None
    html = render_item(shown)
    assert f'<img src="/console/messages/{event}/images/1" alt="photo.jpg' in html
    assert html.count("<img") == 1
    assert "Media could not be fetched: Meta said 404" in html
    # adapters that count the files they could not fetch give the reasons apart
    counted = item_view(social(5), {"media_unavailable": 1, "media_error": "attachment 1: gone"})
    assert counted["media_unavailable"] == "attachment 1: gone"


def render_item(item: dict[str, Any]) -> str:
    return ENV.get_template("item.html").render(it=item)


def test_the_reply_window_as_agents_read_it() -> None:
    from datetime import UTC, datetime, timedelta

    from schemas import Channel
    from services.console.window import state

    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    wrote = now - timedelta(hours=20, minutes=48)
    whatsapp = state(Channel.WHATSAPP, wrote, now)
    assert whatsapp is not None and whatsapp.open
    assert whatsapp.text == "Reply window: 3 h 12 min left"
    closed = state(Channel.WHATSAPP, now - timedelta(days=3), now)
    assert closed is not None and not closed.open and closed.refused is None
    assert (
        closed.text
        == "Reply window: closed 2 days ago: WhatsApp templates only, or another channel"
    )
    # Messenger: a person's reply goes up to 7 days (HUMAN_AGENT), not later, no templates
    messenger = state(Channel.MESSENGER, now - timedelta(days=3), now)
    assert messenger is not None and messenger.open
    assert messenger.text.startswith("Reply window: 4 days left for an agent's reply")
    late = state(Channel.MESSENGER, now - timedelta(days=9), now)
    assert late is not None and late.refused == "outside its reply window"
    assert state(Channel.SMS, wrote, now) is None  # no window


def test_files_that_could_not_be_fetched_offer_a_retry_with_the_csrf_token() -> None:
    files = [
        {"name": "photo.jpg", "content_type": "image/jpeg", "blob": "e/0", "provider_id": "1"},
        {"name": "<b>lost</b>.pdf", "provider_id": "BQAC1"},
        {"name": "location", "url": "geo:48.85,2.35"},  # no file: never retried
        {"name": "clip.mp4", "url": "https://scontent.xx.fbcdn.net/clip.mp4"},
    ]
    failed = {"media_unavailable": 2, "media_error": "attachment 2: HTTP 500"}
    shown = item_view(social(6, attachments=files), failed)
    event = shown["event_id"]
    assert shown["refetch"] == [
        {"url": f"/console/messages/{event}/files/2/retry", "name": "<b>lost</b>.pdf"},
        {"url": f"/console/messages/{event}/files/4/retry", "name": "clip.mp4"},
    ]
    assert shown["files_key"] == "1000"
    html = ENV.get_template("item.html").render(it=shown, csrf="tok")
    assert html.count('<form class="inline refetch"') == 2
    assert f'action="/console/messages/{event}/files/2/retry" method="post">' in html
    assert '<input type="hidden" name="csrf" value="tok">' in html
    assert "Fetch again: &lt;b&gt;lost&lt;/b&gt;.pdf" in html  # a file name is text
    # stored since, or never marked: nothing to retry
    assert item_view(social(7, attachments=files), {})["refetch"] == []

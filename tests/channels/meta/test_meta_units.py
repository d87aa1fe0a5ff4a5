"""The Meta adapter's pure parts: every item shape, the messaging window, the signature."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from channels.base import InboundRequest, SendRefused, SignatureError
from channels.meta.parse import OURS, parse_body
from channels.meta.verify import check_signature, check_subscription
from channels.meta.window import permit
from schemas import Channel, DeliveryStatus, Identity, Interaction, OutboundCommand
from schemas.events import utcnow
from tests.channels.meta import support as meta

NOW = utcnow()


def one(body: bytes) -> Interaction:
    parsed = parse_body(body, NOW, meta.APP_ID)
    assert not parsed.unusable, parsed.unusable
    [event] = parsed.events
    assert isinstance(event, Interaction)
    return event


def item(**fields: object) -> dict[str, object]:
    return {"sender": {"id": "111"}, "recipient": {"id": meta.PAGE_ID}, "timestamp": 1, **fields}


def test_the_samples_signatures_hold_and_a_changed_byte_does_not() -> None:
    body = meta.sample("whatsapp_inbound_text.json")
    signature = meta.sample_signature("whatsapp_inbound_text.json")
    check_signature(
        InboundRequest("POST", "/", {"X-Hub-Signature-256": signature}, body),
        b"%s" % meta.APP_SECRET.encode(),
    )
    with pytest.raises(SignatureError):
        bad = InboundRequest("POST", "/", {"X-Hub-Signature-256": signature}, body + b"\n")
        check_signature(bad, meta.APP_SECRET.encode())


def test_the_handshake_needs_subscribe_and_the_token() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "t", "hub.challenge": "42"}
    assert check_subscription(InboundRequest("GET", "/", {}, query=query), "t") == "42"
    with pytest.raises(SignatureError):
        check_subscription(InboundRequest("GET", "/", {}, query=query), None)


def test_attachments_quick_replies_and_a_story_mention() -> None:
    message = {
        "mid": "m1",
        "attachments": [
            {"type": "image", "payload": {"url": "https://scontent.xx.fbcdn.net/a.jpg"}},
            {"type": "location", "payload": {"coordinates": {"lat": 48.85, "long": 2.35}}},
            {"type": "fallback", "title": "a link", "payload": {"url": "https://example.com"}},
        ],
    }
    parsed = parse_body(meta.messenger(item(message=message)), NOW)
    [event] = parsed.events
    assert isinstance(event, Interaction)
    assert [a.content_type for a in event.attachments] == ["image/*"]
    assert event.attributes["latitude"] == 48.85 and event.attributes["link_title"] == "a link"
    [fetch] = parsed.fetches
    assert fetch.url == "https://scontent.xx.fbcdn.net/a.jpg" and fetch.index == 0
    mention = {
        "mid": "m2",
        "attachments": [
            {"type": "story_mention", "payload": {"url": "https://lookaside.fbsbx.com/x"}}
        ],
    }
    event = one(meta.messenger(item(message=mention), page=meta.IG_ACCOUNT, kind="instagram"))
    assert event.channel is Channel.INSTAGRAM and event.attributes["story_mention"] is True
    assert event.identities[0].scope == meta.IG_ACCOUNT
    reply = {"mid": "m3", "text": "nice", "reply_to": {"story": {"url": "https://x", "id": "99"}}}
    assert (
        one(meta.messenger(item(message=reply), kind="instagram")).attributes["story_reply_to"]
        == "99"
    )


def test_edits_and_unsends_revise_the_original() -> None:
    edit = one(meta.messenger(item(message_edit={"mid": "m1", "text": "fixed", "num_edit": 1})))
    assert edit.revises is not None and (edit.revises.of, edit.revises.action) == ("m1", "edit")
    assert edit.text == "fixed" and edit.provider_message_id == "m1:edit:1"
    gone = one(meta.messenger(item(message={"mid": "m1", "is_deleted": True})))
    assert gone.revises is not None and gone.revises.action == "delete"


def test_postbacks_reactions_and_referrals() -> None:
    postback = one(
        meta.messenger(item(postback={"mid": "p1", "title": "Track order", "payload": "TRACK"}))
    )
    assert (postback.text, postback.attributes["postback_payload"]) == ("Track order", "TRACK")
    reaction = one(
        meta.messenger(
            item(reaction={"mid": "m1", "action": "react", "emoji": "❤", "reaction": "love"})
        )
    )
    assert reaction.text == "❤" and reaction.attributes["reaction_to"] == "m1"
    referral = one(
        meta.messenger(
            item(referral={"ref": "spring", "source": "ADS", "type": "OPEN_THREAD", "ad_id": "7"})
        )
    )
    assert referral.kind.value == "visit" and referral.attributes["referral_ad_id"] == "7"


def test_echoes_ours_dropped_metas_app_outbound() -> None:
    page_echo = {"sender": {"id": meta.PAGE_ID}, "recipient": {"id": "111"}, "timestamp": 1}
    theirs = one(
        meta.messenger(
            dict(page_echo, message={"mid": "e1", "text": "hi", "is_echo": True, "app_id": 1})
        )
    )
    assert theirs.direction.value == "outbound" and theirs.identities[0].value == "111"
    for ours in ({"app_id": int(meta.APP_ID)}, {"metadata": f"{OURS}{uuid.uuid4()}"}):
        parsed = parse_body(
            meta.messenger(dict(page_echo, message={"mid": "e2", "is_echo": True, **ours})),
            NOW,
            meta.APP_ID,
        )
        assert (parsed.events, parsed.echoes) == ([], 1)


def test_reads_without_a_message_are_dead_lettered_not_dropped() -> None:
    parsed = parse_body(meta.messenger(item(read={"watermark": 1}), item(optin={"ref": "x"})), NOW)
    assert parsed.events == [] and len(parsed.unusable) == 2
    assert "watermark" in parsed.unusable[0].reason


def test_whatsapp_types() -> None:
    base = {"from": "16505551234", "timestamp": "1749416383"}
    cases = [
        {
            "id": "w1",
            "type": "location",
            "location": {"latitude": 1.5, "longitude": 2.5, "name": "Shop"},
        },
        {
            "id": "w2",
            "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": "r1", "title": "Red"}},
        },
        {"id": "w3", "type": "button", "button": {"payload": "YES", "text": "Yes"}},
        {"id": "w4", "type": "reaction", "reaction": {"message_id": "wamid.x", "emoji": "👍"}},
        {
            "id": "w5",
            "type": "contacts",
            "contacts": [{"name": {"formatted_name": "Ann"}, "phones": [{"phone": "+1 555"}]}],
        },
        {
            "id": "w6",
            "type": "document",
            "document": {"id": "123", "filename": "invoice.pdf", "mime_type": "application/pdf"},
        },
    ]
    parsed = parse_body(
        meta.whatsapp([dict(base, **c) for c in cases], "16505551234", "Sheena"), NOW
    )
    assert not parsed.unusable
    texts = [e.text for e in parsed.events if isinstance(e, Interaction)]
    assert texts == ["Shop", "Red", "Yes", "👍", "Ann +1 555", None]
    first = parsed.events[0]
    assert isinstance(first, Interaction)
    assert [i.type.value for i in first.identities] == ["whatsapp", "phone"]
    assert first.attributes["sender_name"] == "Sheena"
    [fetch] = parsed.fetches
    assert fetch.media_id == "123"


def test_whatsapp_failed_status_names_metas_error() -> None:
    parsed = parse_body(meta.sample("whatsapp_status_failed.json"), NOW)
    [status] = parsed.events
    assert isinstance(status, DeliveryStatus)
    assert status.state.value == "failed" and status.error_code == "131047"
    assert status.error_message and "24 hours" in status.error_message


def command(
    channel: str, ago: timedelta | None, by: str = "integration:crm", **attributes: str
) -> OutboundCommand:
    if ago is not None:
        attributes["last_inbound_at"] = (NOW - ago).isoformat()
    to = (
        Identity(type="facebook", scope=meta.PAGE_ID, value="111")
        if channel != "whatsapp"
        else Identity(type="whatsapp", value="+16505551234")
    )
    return OutboundCommand(
        customer_id=uuid.uuid4(),
        channel=channel,
        to=to,
        text="hi",
        requested_by=by,
        attributes=attributes,
    )


def test_the_window() -> None:
    assert permit(command("messenger", timedelta(hours=2)), NOW).tag is None
    assert (
        permit(command("messenger", timedelta(days=3), by="console:alice"), NOW).tag
        == "HUMAN_AGENT"
    )
    for late in (
        command("messenger", timedelta(days=3)),  # automatic: never tagged
        command("messenger", timedelta(days=8), by="console:alice"),
        command("whatsapp", timedelta(days=2), by="console:alice"),
        command("instagram", None),
    ):
        with pytest.raises(SendRefused) as refused:
            permit(late, NOW)
        assert refused.value.code == "outside_24h_window"
    assert (
        permit(command("whatsapp", None, template="order_update"), NOW, template=True).tag is None
    )


def test_json_as_meta_escapes_it_still_parses() -> None:
    body = meta.body_of(
        {
            "object": "page",
            "entry": [
                {"id": meta.PAGE_ID, "messaging": [item(message={"mid": "m/1", "text": "é/ü"})]}
            ],
        }
    )
    assert b"\\/" in body
    assert one(body).text == "é/ü"
    assert json.loads(body)["object"] == "page"

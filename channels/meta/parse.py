"""Pure parsing of Meta's webhooks (Messenger, Instagram, WhatsApp Cloud API) into events: no
I/O, no clock (the time of arrival is passed in).

One request holds many entries, each many ``messaging`` items (Messenger, Instagram) or
``changes`` (WhatsApp): every one is read. Each event's ``provider_message_id`` comes from
Meta's ids, so a redelivery yields the same event ids and the timeline keeps one row:

| item | becomes | provider_message_id |
| --- | --- | --- |
| ``message`` (text, attachments, quick reply, story reply/mention) | inbound message | ``mid`` |
| ``message`` with ``is_echo`` (the page wrote in Meta's own app) | outbound message | ``mid`` |
| ``message`` with ``is_deleted`` (unsent) | deletion of ``mid`` (``revises``) | ``{mid}:deleted`` |
| ``message_edit`` | edit of ``mid`` (``revises``) | ``{mid}:edit:{num_edit}`` |
| ``postback`` | inbound message (the button's title) | ``mid`` |
| ``reaction`` | inbound message (the emoji) | ``reaction:{mid}:{user}:{action}:{ts}`` |
| ``referral`` | inbound visit | ``referral:{user}:{ts}`` |
| ``delivery`` / ``read`` with ``mid(s)`` | delivery states of our messages | (``mid``) |
| WhatsApp ``messages[]`` | inbound message | WhatsApp ``id`` (``wamid.…``) |
| WhatsApp ``statuses[]`` | delivery states of our messages | (``id``) |

What cannot be an event (an unknown item, a read receipt with only a watermark) comes back as
``Unusable`` with its reason, for the adapter to dead-letter; echoes of the hub's own replies
are counted and dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from channels.base import UNRESOLVED_COMMAND, ChannelEvent, ParseError
from schemas import (
    Attachment,
    Channel,
    DeliveryState,
    DeliveryStatus,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    Kind,
    Revision,
    ThreadRef,
)
from schemas.events import Scalar

SOURCE = "channels/meta"
#: The ``metadata`` the hub's Messenger replies carry, echoed back by Meta.
OURS = "omnihub:"
#: The MIME type a Messenger/Instagram attachment type stands for until the file is fetched.
ATTACHMENT_TYPES = {
    "image": "image/*",
    "audio": "audio/*",
    "video": "video/*",
    "file": "application/octet-stream",
    "story_mention": "image/*",
    "ig_reel": "video/*",
    "reel": "video/*",
    "share": "image/*",
}
#: WhatsApp message types that carry a media id.
WA_MEDIA = ("image", "audio", "video", "document", "sticker")
WA_STATES = {
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "read": DeliveryState.READ,
    "failed": DeliveryState.FAILED,
}
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True)
class Fetch:
    """A file an event names, fetched before the event is published: from Meta's CDN
    (``url``, Messenger and Instagram) or through the Graph API (``media_id``, WhatsApp)."""

    event_id: Any
    index: int
    url: str | None = None
    media_id: str | None = None


@dataclass(frozen=True)
class Unusable:
    """An item that can be no event, and why."""

    reason: str
    item: Any


@dataclass
class Parsed:
    """What one webhook body holds."""

    events: list[ChannelEvent] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    #: Echoes of the hub's own replies, dropped.
    echoes: int = 0


def clean(value: Any, limit: int | None = None) -> str | None:
    """A payload string without what the hub cannot store (NUL, lone surrogates)."""
    if not isinstance(value, str) or not value:
        return None
    text = _UNSTORABLE.sub("", value)
    return text[:limit] if limit else text


def _when(value: Any, *, millis: bool) -> datetime | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(number / 1000 if millis else number, UTC)


def parse_body(body: bytes, received_at: datetime, app_id: str | None = None) -> Parsed:
    """Every event of a webhook body; ParseError when it is no Meta webhook at all."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entry"), list):
        raise ParseError("not a Meta webhook: no entry list")
    kind = data.get("object")
    parsed = Parsed()
    if kind == "page":
        channel = Channel.MESSENGER
    elif kind == "instagram":
        channel = Channel.INSTAGRAM
    elif kind == "whatsapp_business_account":
        for entry in data["entry"]:
            _whatsapp_entry(entry, received_at, parsed)
        return parsed
    else:
        raise ParseError(f"not an object this channel reads: {str(kind)[:40]!r}")
    for entry in data["entry"]:
        if not isinstance(entry, dict):
            parsed.unusable.append(Unusable("an entry that is not an object", entry))
            continue
        items = entry.get("messaging") or entry.get("standby")
        if not isinstance(items, list):
            reason = "an entry without messaging items (changes are not subscribed to)"
            parsed.unusable.append(Unusable(reason, entry))
            continue
        account = str(entry.get("id") or "")
        for item in items:
            try:
                _messaging(channel, account, item, received_at, parsed, app_id)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                parsed.unusable.append(Unusable(f"{type(exc).__name__}: {exc}"[:1000], item))
    return parsed


# --- Messenger and Instagram --------------------------------------------------------------


def _user(channel: Channel, account: str, user: str) -> Identity:
    kind = IdentityType.FACEBOOK if channel is Channel.MESSENGER else IdentityType.INSTAGRAM
    return Identity(type=kind, scope=account, value=user)


def _thread(channel: Channel, account: str, user: str, reply_to: str | None = None) -> ThreadRef:
    return ThreadRef(id=f"{channel.value}:{account}:{user}", reply_to=reply_to)


def _messaging(
    channel: Channel,
    account: str,
    item: dict[str, Any],
    received_at: datetime,
    parsed: Parsed,
    app_id: str | None,
) -> None:
    sender = str(item["sender"]["id"])
    recipient = str(item["recipient"]["id"])
    account = account or recipient
    at = _when(item.get("timestamp"), millis=True) or received_at
    message = item.get("message")
    if isinstance(message, dict) and message.get("is_echo"):
        _echo(channel, account, recipient, message, at, received_at, parsed, app_id)
        return
    user = _user(channel, account, sender)
    base: dict[str, Any] = {
        "channel": channel,
        "direction": Direction.INBOUND,
        "kind": Kind.MESSAGE,
        "occurred_at": at,
        "received_at": received_at,
        "identities": [user],
        "source": SOURCE,
    }
    if isinstance(message, dict):
        _message(channel, account, sender, message, base, parsed)
    elif isinstance(item.get("message_edit"), dict):
        edit = item["message_edit"]
        mid = str(edit["mid"])
        parsed.events.append(
            Interaction.create(
                **base,
                thread=_thread(channel, account, sender, mid),
                text=clean(edit.get("text")),
                provider_message_id=f"{mid}:edit:{edit.get('num_edit', 0)}",
                revises=Revision(of=mid, action="edit"),
            )
        )
    elif isinstance(item.get("postback"), dict):
        postback = item["postback"]
        pid = postback.get("mid") or f"postback:{sender}:{item.get('timestamp')}"
        attributes: dict[str, Scalar] = {"postback_payload": clean(postback.get("payload"), 1000)}
        if isinstance(postback.get("referral"), dict):
            attributes.update(_referral(postback["referral"]))
        parsed.events.append(
            Interaction.create(
                **base,
                thread=_thread(channel, account, sender),
                text=clean(postback.get("title")) or clean(postback.get("payload")),
                provider_message_id=str(pid),
                attributes=attributes,
            )
        )
    elif isinstance(item.get("reaction"), dict):
        reaction = item["reaction"]
        mid = str(reaction["mid"])
        action = str(reaction.get("action") or "react")
        emoji = clean(reaction.get("emoji")) or clean(reaction.get("reaction"))
        parsed.events.append(
            Interaction.create(
                **base,
                thread=_thread(channel, account, sender, mid),
                text=emoji if action == "react" else None,
                provider_message_id=f"reaction:{mid}:{sender}:{action}:{item.get('timestamp')}",
                attributes={
                    "reaction": emoji,
                    "reaction_name": clean(reaction.get("reaction"), 100),
                    "reaction_to": mid,
                    "reaction_action": action,
                },
            )
        )
    elif isinstance(item.get("referral"), dict):
        parsed.events.append(
            Interaction.create(
                **dict(base, kind=Kind.VISIT),
                thread=_thread(channel, account, sender),
                provider_message_id=f"referral:{sender}:{item.get('timestamp')}",
                attributes=_referral(item["referral"]),
            )
        )
    elif isinstance(item.get("delivery"), dict):
        mids = item["delivery"].get("mids") or []
        if not mids:
            parsed.unusable.append(Unusable("a delivery receipt without message ids", item))
        for mid in mids:
            parsed.events.append(_state(channel, str(mid), DeliveryState.DELIVERED, at))
    elif isinstance(item.get("read"), dict):
        mid = item["read"].get("mid")
        if not mid:  # Messenger reports reads by watermark alone: no message to mark
            reason = "a read receipt with only a watermark: it names no message"
            parsed.unusable.append(Unusable(reason, item))
        else:
            parsed.events.append(_state(channel, str(mid), DeliveryState.READ, at))
    else:
        known = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
        parsed.unusable.append(Unusable(f"an item this channel does not read: {known}", item))


def _referral(referral: dict[str, Any]) -> dict[str, Scalar]:
    return {
        "referral_source": clean(referral.get("source"), 100),
        "referral_type": clean(referral.get("type"), 100),
        "referral_ref": clean(referral.get("ref"), 1000),
        "referral_ad_id": clean(referral.get("ad_id"), 100),
    }


def _state(channel: Channel, mid: str, state: DeliveryState, at: datetime) -> DeliveryStatus:
    return DeliveryStatus(
        command_id=UNRESOLVED_COMMAND,
        channel=channel,
        state=state,
        occurred_at=at,
        provider_message_id=mid,
    )


def _attachments(
    message: dict[str, Any], attributes: dict[str, Scalar]
) -> tuple[list[Attachment], list[str | None]]:
    """The message's files (with the CDN address to fetch each from) and what its other
    attachments say (a location, a fallback link, a story mention) as attributes."""
    files: list[Attachment] = []
    urls: list[str | None] = []
    for found in message.get("attachments") or []:
        kind = str(found.get("type") or "")
        payload = found.get("payload") or {}
        if kind == "location" and isinstance(payload.get("coordinates"), dict):
            point = payload["coordinates"]
            attributes["latitude"] = float(point["lat"])
            attributes["longitude"] = float(point["long"])
            continue
        if kind == "fallback":
            attributes["link_title"] = clean(found.get("title") or payload.get("title"), 500)
            continue
        if kind == "story_mention":
            attributes["story_mention"] = True
        if kind == "template":
            attributes["template"] = clean(payload.get("template_type"), 100)
            continue
        url = clean(payload.get("url"))
        if payload.get("sticker_id"):
            attributes["sticker_id"] = str(payload["sticker_id"])[:100]
        files.append(
            Attachment(
                name=clean(found.get("title") or payload.get("title"), 255) or kind or None,
                content_type=ATTACHMENT_TYPES.get(kind, "application/octet-stream"),
                provider_id=clean(
                    payload.get("attachment_id") or payload.get("reel_video_id"), 255
                ),
                # kept so an agent can fetch the file again (until Meta's address expires)
                url=url if url and len(url) <= 2048 else None,
            )
        )
        urls.append(url)
    return files, urls


def _message(
    channel: Channel,
    account: str,
    sender: str,
    message: dict[str, Any],
    base: dict[str, Any],
    parsed: Parsed,
) -> None:
    mid = str(message["mid"])
    if message.get("is_deleted"):
        parsed.events.append(
            Interaction.create(
                **base,
                thread=_thread(channel, account, sender, mid),
                provider_message_id=f"{mid}:deleted",
                revises=Revision(of=mid, action="delete"),
            )
        )
        return
    attributes: dict[str, Scalar] = {}
    if isinstance(message.get("quick_reply"), dict):
        attributes["quick_reply_payload"] = clean(message["quick_reply"].get("payload"), 1000)
    reply_to = message.get("reply_to") or {}
    if isinstance(reply_to.get("story"), dict):
        attributes["story_reply_to"] = clean(str(reply_to["story"].get("id") or ""), 255)
    if message.get("is_unsupported"):
        attributes["unsupported"] = "a message type Meta does not deliver to apps"
    files, urls = _attachments(message, attributes)
    event = Interaction.create(
        **base,
        thread=_thread(channel, account, sender, clean(reply_to.get("mid"), 512)),
        text=clean(message.get("text")),
        attachments=files,
        provider_message_id=mid,
        attributes=attributes,
    )
    parsed.events.append(event)
    for index, url in enumerate(urls):
        parsed.fetches.append(Fetch(event.event_id, index, url=url))


def _echo(
    channel: Channel,
    account: str,
    user: str,
    message: dict[str, Any],
    at: datetime,
    received_at: datetime,
    parsed: Parsed,
    app_id: str | None,
) -> None:
    """A message the page sent: the hub's own reply (dropped: the dispatcher recorded it), or
    one a person wrote in Meta's own apps (recorded as outbound, once)."""
    metadata = str(message.get("metadata") or "")
    echoed_app = str(message.get("app_id") or "")
    if metadata.startswith(OURS) or (app_id and echoed_app == app_id):
        parsed.echoes += 1
        return
    attributes: dict[str, Scalar] = {"sent_from": "meta", "app_id": echoed_app or None}
    files, urls = _attachments(message, attributes)
    event = Interaction.create(
        channel=channel,
        direction=Direction.OUTBOUND,
        kind=Kind.MESSAGE,
        occurred_at=at,
        received_at=received_at,
        identities=[_user(channel, account, user)],
        thread=_thread(channel, account, user),
        text=clean(message.get("text")),
        attachments=files,
        provider_message_id=str(message["mid"]),
        source=SOURCE,
        attributes=attributes,
    )
    parsed.events.append(event)
    for index, url in enumerate(urls):
        parsed.fetches.append(Fetch(event.event_id, index, url=url))


# --- WhatsApp -----------------------------------------------------------------------------


def wa_identities(wa_id: str) -> list[Identity]:
    """A WhatsApp user: their ``wa_id`` and, the same number, their phone (E.164), so they
    join the customer who texted or called from it."""
    number = "+" + wa_id.lstrip("+")
    return [
        Identity(type=IdentityType.WHATSAPP, value=number),
        Identity(type=IdentityType.PHONE, value=number),
    ]


def _whatsapp_entry(entry: Any, received_at: datetime, parsed: Parsed) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
        parsed.unusable.append(Unusable("an entry without changes", entry))
        return
    for change in entry["changes"]:
        if not isinstance(change, dict) or change.get("field") != "messages":
            name = change.get("field") if isinstance(change, dict) else None
            parsed.unusable.append(Unusable(f"a change of field {name!r} is not read", change))
            continue
        value = change.get("value") or {}
        names = {
            str(c.get("wa_id")): clean((c.get("profile") or {}).get("name"), 255)
            for c in value.get("contacts") or []
            if isinstance(c, dict)
        }
        number = (value.get("metadata") or {}).get("phone_number_id")
        for message in value.get("messages") or []:
            try:
                _wa_message(message, names, number, received_at, parsed)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                parsed.unusable.append(Unusable(f"{type(exc).__name__}: {exc}"[:1000], message))
        for status in value.get("statuses") or []:
            try:
                parsed.events.append(_wa_status(status, received_at))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                parsed.unusable.append(Unusable(f"{type(exc).__name__}: {exc}"[:1000], status))
        for error in value.get("errors") or []:
            parsed.unusable.append(Unusable("WhatsApp reported an error", error))


def describe_wa_error(errors: Any) -> tuple[str | None, str | None]:
    """Meta's error code and a message people can read, from a status's ``errors``."""
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    error = errors[0]
    details = (error.get("error_data") or {}).get("details")
    title = clean(error.get("title") or error.get("message"), 500) or "error"
    message = f"{title}: {details}" if details and details != title else title
    return str(error.get("code") or "")[:64] or None, clean(message, 2000)


def _wa_status(status: dict[str, Any], received_at: datetime) -> DeliveryStatus:
    state = WA_STATES.get(str(status["status"]))
    if state is None:
        raise ValueError(f"unknown WhatsApp status {str(status['status'])[:40]!r}")
    code, message = describe_wa_error(status.get("errors"))
    return DeliveryStatus(
        command_id=UNRESOLVED_COMMAND,
        channel=Channel.WHATSAPP,
        state=state,
        occurred_at=_when(status.get("timestamp"), millis=False) or received_at,
        provider_message_id=str(status["id"]),
        error_code=code,
        error_message=message,
    )


def _wa_message(
    message: dict[str, Any],
    names: dict[str, str | None],
    number: Any,
    received_at: datetime,
    parsed: Parsed,
) -> None:
    sender = str(message["from"])
    kind = str(message.get("type") or "")
    mid = str(message["id"])
    attributes: dict[str, Scalar] = {"sender_name": names.get(sender)}
    if number:
        attributes["business_number_id"] = str(number)[:64]
    text: str | None = None
    files: list[Attachment] = []
    media: list[str] = []
    context = message.get("context") or {}
    reply_to = clean(context.get("id"), 512)
    if kind == "text":
        text = clean((message.get("text") or {}).get("body"))
    elif kind in WA_MEDIA:
        body = message[kind]
        text = clean(body.get("caption"))
        files.append(
            Attachment(
                name=clean(body.get("filename"), 255) or kind,
                content_type=clean(body.get("mime_type"), 255),
                provider_id=str(body["id"])[:255],
            )
        )
        media.append(str(body["id"]))
    elif kind == "location":
        place = message["location"]
        attributes["latitude"] = float(place["latitude"])
        attributes["longitude"] = float(place["longitude"])
        attributes["place_name"] = clean(place.get("name"), 500)
        attributes["place_address"] = clean(place.get("address"), 1000)
        text = clean(place.get("name")) or f"{place['latitude']}, {place['longitude']}"
    elif kind == "contacts":
        cards = message["contacts"]
        shared = []
        for card in cards:
            name = (card.get("name") or {}).get("formatted_name") or ""
            phones = ", ".join(str(p.get("phone") or "") for p in card.get("phones") or [])
            shared.append(f"{name} {phones}".strip())
        attributes["contacts"] = json.dumps(cards, ensure_ascii=False)[:4000]
        text = clean("\n".join(shared))
    elif kind == "interactive":
        answer = message["interactive"]
        reply = answer.get("button_reply") or answer.get("list_reply") or {}
        attributes["reply_id"] = clean(reply.get("id"), 256)
        attributes["reply_type"] = clean(answer.get("type"), 40)
        text = clean(reply.get("title"))
    elif kind == "button":
        button = message["button"]
        attributes["button_payload"] = clean(button.get("payload"), 1000)
        text = clean(button.get("text"))
    elif kind == "reaction":
        reaction = message["reaction"]
        reply_to = clean(reaction.get("message_id"), 512)
        emoji = clean(reaction.get("emoji"))
        attributes.update(
            {
                "reaction": emoji,
                "reaction_to": reply_to,
                "reaction_action": "react" if emoji else "unreact",
            }
        )
        text = emoji
    elif kind == "unsupported":
        attributes["unsupported"] = describe_wa_error(message.get("errors"))[1] or "unsupported"
    else:
        parsed.unusable.append(Unusable(f"a WhatsApp {kind[:40]!r} message is not read", message))
        return
    identities = wa_identities(sender)
    event = Interaction.create(
        channel=Channel.WHATSAPP,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        occurred_at=_when(message.get("timestamp"), millis=False) or received_at,
        received_at=received_at,
        identities=identities,
        thread=ThreadRef(id=f"whatsapp:{number or ''}:{identities[0].value}", reply_to=reply_to),
        text=text,
        attachments=files,
        provider_message_id=mid,
        source=SOURCE,
        attributes=attributes,
    )
    parsed.events.append(event)
    for index, media_id in enumerate(media):
        parsed.fetches.append(Fetch(event.event_id, index, media_id=media_id))

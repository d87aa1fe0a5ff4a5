"""Pure parsing of X's Account Activity API payloads into events: no I/O, no clock (the time
of arrival is passed in).

One payload names the account it is for (``for_user_id``) and holds one or more arrays of
events; every event of every array is read. Provider ids are X's event ids, so a redelivered
payload yields the same event ids and the timeline keeps one row:

| event | becomes | provider_message_id |
| --- | --- | --- |
| ``direct_message_events`` ``message_create`` from a user | inbound message | the event ``id`` |
| the same with ``quick_reply_response`` | inbound message (the option's text) | the event ``id`` |
| ``message_create`` the account sent from X's own apps | outbound message | the event ``id`` |
| ``message_create`` the account sent through the hub's app (``X_APP_ID``) | dropped (echo) | |
| ``direct_message_mark_read_events`` by the user | ``read`` of our DM | ``last_read_event_id`` |
| ``direct_message_mark_read_events`` by the account | ignored, counted | |
| ``direct_message_indicate_typing_events`` | ignored, counted | |
| any other array or DM event type | dead-lettered with the reason | |
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
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
    ThreadRef,
)
from schemas.events import Scalar

SOURCE = "channels/x"
DM_EVENTS = "direct_message_events"
TYPING_EVENTS = "direct_message_indicate_typing_events"
READ_EVENTS = "direct_message_mark_read_events"
#: Top-level keys that describe the events rather than being events.
CONTEXT_KEYS = frozenset({"for_user_id", "users", "apps", "user_has_blocked"})
#: What a DM's media type stands for until the file is fetched.
MEDIA_TYPES = {"photo": "image/jpeg", "animated_gif": "video/mp4", "video": "video/mp4"}


@dataclass(frozen=True)
class Fetch:
    """A DM's media file to fetch into the blob store: attachment ``index`` of ``event_id``."""

    event_id: uuid.UUID
    index: int
    url: str


@dataclass
class Parsed:
    """What a payload makes: events, files to fetch, what was ignored (counted by reason) and
    what can be no event (reasons, for the adapter to dead-letter)."""

    account: str
    events: list[ChannelEvent] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    ignored: Counter[str] = field(default_factory=Counter)
    unusable: list[str] = field(default_factory=list)


def read_payload(body: bytes) -> dict[str, Any]:
    """The payload as a JSON object naming its account; ParseError otherwise."""
    try:
        raw = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParseError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ParseError("not a JSON object")
    account = raw.get("for_user_id")
    if not isinstance(account, str | int) or not str(account).isdigit():
        raise ParseError("no for_user_id: not an Account Activity API payload")
    return raw


def order_key(raw: dict[str, Any]) -> str:
    """One conversation's payloads stay in order: the account and the other party of the
    first DM (the account alone for other payloads)."""
    account = str(raw["for_user_id"])
    for item in _items(raw.get(DM_EVENTS)):
        create = item.get("message_create")
        if isinstance(create, dict):
            sender = str(create.get("sender_id") or "")
            target = _obj(create.get("target"))
            other = str(target.get("recipient_id") or "") if sender == account else sender
            return f"{account}:{other}"
    return account


def parse_payload(
    body: bytes,
    *,
    received_at: datetime,
    account: str | None = None,
    app_id: str | None = None,
) -> Parsed:
    """Every event of the payload; ParseError when the payload is not X's or is for another
    account than ``account`` (``X_USER_ID``)."""
    raw = read_payload(body)
    for_user = str(raw["for_user_id"])
    if account and for_user != account:
        raise ParseError(f"for_user_id {for_user} is not this hub's account (X_USER_ID)")
    parsed = Parsed(for_user)
    users = _obj(raw.get("users"))
    known = False
    for key, value in raw.items():
        if key in CONTEXT_KEYS:
            continue
        known = True
        if key == DM_EVENTS:
            for item in _items(value):
                _dm(item, for_user, users, app_id, received_at, parsed)
        elif key == READ_EVENTS:
            for item in _items(value):
                _read(item, for_user, received_at, parsed)
        elif key == TYPING_EVENTS:
            parsed.ignored["typing"] += len(_items(value))
        else:
            parsed.unusable.append(f"X event type {key!r} is not handled by the hub")
    if not known:
        parsed.unusable.append("the payload holds no events")
    return parsed


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _items(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def clean(value: Any, limit: int | None = None) -> str | None:
    """A string without NUL (PostgreSQL refuses it), trimmed to ``limit``; None when empty."""
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "")
    return (text[:limit] if limit else text) or None


def _when(value: Any, fallback: datetime) -> datetime:
    """X's ``created_timestamp``, milliseconds since the epoch as a string."""
    try:
        return datetime.fromtimestamp(int(str(value)) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return fallback


def conversation_id(account: str, user: str) -> str:
    """X's id of a one-to-one DM conversation: both user ids, the smaller first."""
    first, second = sorted((account, user), key=lambda v: (len(v), v))
    return f"{first}-{second}"


def identity(account: str, user: str) -> Identity:
    """The customer's X identity: their user id, scoped to the account they wrote to."""
    return Identity(type=IdentityType.X, scope=account, value=user)


def _profile(users: dict[str, Any], user: str) -> dict[str, Scalar]:
    found = users.get(user)
    if not isinstance(found, dict):
        return {}
    return {
        "sender_name": clean(found.get("name"), 300),
        "username": clean(found.get("screen_name"), 100),
    }


def _dm(
    item: dict[str, Any],
    account: str,
    users: dict[str, Any],
    app_id: str | None,
    received_at: datetime,
    parsed: Parsed,
) -> None:
    kind = item.get("type")
    event_id = str(item.get("id") or "")
    create = item.get("message_create")
    if kind != "message_create":
        parsed.unusable.append(f"direct message event type {kind!r} is not handled by the hub")
        return
    if not event_id.isdigit() or not isinstance(create, dict):
        parsed.unusable.append("a message_create without an id or message_create object")
        return
    sender = str(create.get("sender_id") or "")
    target = _obj(create.get("target"))
    recipient = str(target.get("recipient_id") or "")
    if not sender.isdigit() or not recipient.isdigit():
        parsed.unusable.append(f"direct message {event_id} names no sender or recipient")
        return
    own = sender == account
    if own and app_id and str(create.get("source_app_id") or "") == app_id:
        parsed.ignored["echo"] += 1  # the hub's own reply: the dispatcher recorded it
        return
    customer = recipient if own else sender
    data = _obj(create.get("message_data"))
    attributes: dict[str, Scalar] = {}
    if own:
        attributes["sent_from"] = "x"
        attributes["app_id"] = clean(str(create.get("source_app_id") or "")) or None
    else:
        attributes.update(_profile(users, customer))
    reply = data.get("quick_reply_response")
    if isinstance(reply, dict):
        attributes["quick_reply"] = clean(reply.get("metadata"), 1000) or ""
    files, urls, shown = _media(data.get("attachment"))
    event = Interaction.create(
        channel=Channel.X,
        direction=Direction.OUTBOUND if own else Direction.INBOUND,
        kind=Kind.MESSAGE,
        occurred_at=_when(item.get("created_timestamp"), received_at),
        received_at=received_at,
        identities=[identity(account, customer)],
        thread=ThreadRef(id=conversation_id(account, customer)),
        text=_text(data, shown),
        attachments=files,
        provider_message_id=event_id,
        source=SOURCE,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    parsed.events.append(event)
    for index, url in enumerate(urls):
        if url:
            parsed.fetches.append(Fetch(event.event_id, index, url))


def _text(data: dict[str, Any], media_link: str | None) -> str | None:
    """The DM's text, its t.co links expanded and the media's own link removed."""
    text = clean(data.get("text")) or ""
    entities = _obj(data.get("entities"))
    for link in _items(entities.get("urls")):
        short, long = link.get("url"), link.get("expanded_url")
        if not isinstance(short, str) or not short:
            continue
        if short == media_link:
            text = text.replace(short, "")
        elif isinstance(long, str) and long:
            text = text.replace(short, long)
    if media_link:
        text = text.replace(media_link, "")
    return clean(text.strip())


def _media(attachment: Any) -> tuple[list[Attachment], list[str | None], str | None]:
    """A DM's one media file as attachment metadata, where to fetch it, and its t.co link."""
    if not isinstance(attachment, dict) or attachment.get("type") != "media":
        return [], [], None
    media = attachment.get("media")
    if not isinstance(media, dict):
        return [], [], None
    kind = str(media.get("type") or "")
    url = clean(media.get("media_url_https"), 2048)
    info = media.get("video_info")
    variants = info.get("variants") if isinstance(info, dict) and kind != "photo" else None
    mp4 = [
        v
        for v in _items(variants)
        if v.get("content_type") == "video/mp4" and isinstance(v.get("url"), str)
    ]
    if mp4:  # the largest rendition of a video or GIF; the image is only its preview
        url = clean(max(mp4, key=_bitrate)["url"], 2048)
    name = (url or "").rsplit("/", 1)[-1].split("?", 1)[0] or None
    file = Attachment(
        name=clean(name, 255),
        content_type=MEDIA_TYPES.get(kind, "application/octet-stream"),
        provider_id=clean(str(media.get("id_str") or media.get("id") or ""), 255),
        url=url,
    )
    return [file], [url], clean(media.get("url"))


def _bitrate(variant: dict[str, Any]) -> int:
    value = variant.get("bitrate")
    return value if isinstance(value, int) else 0


def _read(item: dict[str, Any], account: str, received_at: datetime, parsed: Parsed) -> None:
    reader = str(item.get("sender_id") or "")
    last = str(item.get("last_read_event_id") or "")
    if reader == account:
        parsed.ignored["read_by_account"] += 1  # someone read the customer's DMs in X's app
        return
    if not last.isdigit():
        parsed.unusable.append("a read event without last_read_event_id")
        return
    parsed.events.append(
        DeliveryStatus(
            command_id=UNRESOLVED_COMMAND,
            channel=Channel.X,
            state=DeliveryState.READ,
            occurred_at=_when(item.get("created_timestamp"), received_at),
            provider_message_id=last,
        )
    )

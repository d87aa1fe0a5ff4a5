"""Pure parsing of a Telegram update into one interaction (no I/O, no clock: time is passed
in), with the files the processors then fetch into the blob store.

Ids are the bot's, so a retried update makes the same event (``schemas.ids.event_id_for``)
and two bots' chats never collide:

- ``message``: a message (text or caption, attachments), ``{bot}:{chat}:{message_id}``;
- ``edited_message``: an edit that ``revises`` that original,
  ``{bot}:{chat}:{message_id}:edit:{edit_date}``;
- ``callback_query``: a message whose text is the button's data, ``{bot}:callback:{id}``.

What can be no event raises ``ParseError`` (``Ignored`` for what the settings or the contract
leave out: group messages under ``TELEGRAM_GROUPS=ignore``, the bot's own messages, update
types the hub does not read); the caller dead-letters it with the reason.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from channels.base import ParseError
from channels.telegram.config import GroupPolicy
from channels.telegram.models import CallbackQuery, FileObject, Message, Update, User
from schemas import (
    Attachment,
    Channel,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    Kind,
    Revision,
    ThreadRef,
)
from schemas.events import MAX_TEXT, Scalar
from schemas.ids import event_id_for

#: Chats that are not the user's own conversation with the bot.
GROUP_CHATS = frozenset({"group", "supergroup", "channel"})
#: Update fields the adapter turns into events; any other is dead-lettered with its name.
READ = ("message", "edited_message", "callback_query")
#: What PostgreSQL cannot store (NUL) and what cannot be encoded as UTF-8 (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: A language tag as Telegram gives it (IETF, e.g. ``en``, ``pt-br``).
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z0-9]{2,8})*$")


class Ignored(ParseError):
    """An authentic update that is deliberately no event (its reason is the dead letter's)."""


@dataclass(frozen=True)
class FileRef:
    """A file of the message, held by Telegram, to fetch into the blob store."""

    #: The attachment's position in ``Interaction.attachments``.
    index: int
    file_id: str
    size: int | None


@dataclass(frozen=True)
class Parsed:
    """One update's interaction, the files to fetch, and files the update itself holds
    (a contact's vCard), by attachment position."""

    interaction: Interaction
    files: tuple[FileRef, ...] = ()
    inline: dict[int, bytes] = field(default_factory=dict)


def clean(text: str | None) -> str | None:
    """``text`` without what the hub cannot store; None for nothing."""
    if text is None:
        return None
    return _UNSTORABLE.sub("", text) or None


def message_id(bot: str, chat: int, message: int) -> str:
    """The provider id of a message in a chat of the bot (the same for what we send)."""
    return f"{bot}:{chat}:{message}"


def read_update(body: bytes) -> tuple[dict[str, Any], Update]:
    """The update's JSON and model; ParseError when it is not one."""
    try:
        raw = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ParseError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ParseError("a Telegram update is a JSON object")
    try:
        return raw, Update.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ParseError(f"not a Telegram update: {where}: {first['msg']}") from None


def order_key(raw: dict[str, Any]) -> str:
    """What keeps one chat's updates in order (an edit after its message): the chat id, read
    leniently from the JSON (the update is checked later, when it is read)."""
    for name in ("message", "edited_message", "channel_post", "edited_channel_post"):
        found = raw.get(name)
        if isinstance(found, dict) and isinstance(found.get("chat"), dict):
            return f"chat:{found['chat'].get('id')}"[:1000]
    query = raw.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("from"), dict):
        return f"chat:{query['from'].get('id')}"[:1000]
    return f"update:{raw.get('update_id')}"[:1000]


def _kind(raw: dict[str, Any]) -> str:
    return next((k for k in raw if k != "update_id"), "nothing")


def _identity(bot: str, user: User) -> Identity:
    return Identity(type=IdentityType.TELEGRAM, scope=bot, value=str(user.id))


def _language(user: User) -> str | None:
    code = (user.language_code or "").strip().lower()
    return code if _LANGUAGE.match(code) else None


def _sender(user: User) -> dict[str, Scalar]:
    """Who wrote, as the console shows it: the profile name Telegram gives, the username."""
    return {
        "sender_name": clean(user.full_name[:300]),
        "username": clean(user.username),
        "language_code": clean(user.language_code),
    }


def _file(kind: str, found: FileObject) -> Attachment:
    name = found.file_name
    if name is None and kind == "sticker":
        name = "sticker" + (" " + found.emoji if found.emoji else "")
    mime = found.mime_type
    if mime is None and kind == "sticker":
        mime = (
            "application/x-tgsticker"
            if found.is_animated
            else ("video/webm" if found.is_video else "image/webp")
        )
    if mime is None and kind == "voice":
        mime = "audio/ogg"
    return Attachment(
        name=clean((name or kind)[:255]),
        content_type=clean(mime[:255]) if mime else None,
        size=found.file_size if found.file_size and found.file_size >= 0 else None,
        provider_id=clean(found.file_id[:255]),
        inline=kind == "sticker",
    )


FILE_KINDS = ("document", "audio", "voice", "video", "video_note", "animation", "sticker")


def _attachments(
    message: Message,
) -> tuple[list[Attachment], list[FileRef], dict[int, bytes], dict[str, Scalar]]:
    """The message's photo (largest size), files, location and contact as attachments."""
    attachments: list[Attachment] = []
    files: list[FileRef] = []
    inline: dict[int, bytes] = {}
    attributes: dict[str, Scalar] = {}
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        files.append(FileRef(len(attachments), largest.file_id, largest.file_size))
        attachments.append(
            Attachment(
                name="photo.jpg",
                content_type="image/jpeg",
                size=largest.file_size,
                provider_id=clean(largest.file_id[:255]),
                inline=True,
            )
        )
    for kind in FILE_KINDS:
        found: FileObject | None = getattr(message, kind)
        if found is not None:
            files.append(FileRef(len(attachments), found.file_id, found.file_size))
            attachments.append(_file(kind, found))
            attributes["media_kind"] = kind
    if message.location is not None:
        lat, lon = message.location.latitude, message.location.longitude
        attachments.append(
            Attachment(name=f"location {lat:.6f}, {lon:.6f}", url=f"geo:{lat:.6f},{lon:.6f}")
        )
        attributes.update(latitude=lat, longitude=lon)
    if message.contact is not None:
        contact = message.contact
        name = " ".join(p for p in (contact.first_name, contact.last_name) if p)
        label = clean(f"contact {name} {contact.phone_number}".strip()[:255])
        if contact.vcard:
            inline[len(attachments)] = contact.vcard.encode("utf-8", "replace")
        attachments.append(Attachment(name=label, content_type="text/vcard"))
        attributes["contact_phone"] = clean(contact.phone_number[:64])
    return attachments, files, inline, attributes


def _create(**fields: Any) -> Interaction:
    try:
        return Interaction.create(**fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ParseError(f"not a valid interaction: {where}: {first['msg']}") from None


def _when(stamp: int) -> datetime:
    return datetime.fromtimestamp(stamp, UTC)


def _message(
    update: Update,
    message: Message,
    bot: str,
    groups: GroupPolicy,
    received_at: datetime,
    source: str,
    *,
    edit: bool,
) -> Parsed:
    chat = message.chat
    if chat.type in GROUP_CHATS and groups == "ignore":
        raise Ignored(f"a message in a {chat.type} chat (TELEGRAM_GROUPS=ignore)")
    user = message.from_
    if user is None:
        raise Ignored(f"a message in a {chat.type} chat without a sender user")
    if str(user.id) == bot:
        raise Ignored("the bot's own message (an echo): never a customer's")
    if user.is_bot:
        raise Ignored("a message from another bot")
    attachments, files, inline, attributes = _attachments(message)
    text = clean(message.text if message.text is not None else message.caption)
    original = message_id(bot, chat.id, message.message_id)
    reply = message.reply_to_message
    replied = message_id(bot, chat.id, reply.message_id) if reply is not None else None
    attributes.update(_sender(user))
    attributes.update(
        update_id=update.update_id,
        telegram_message_id=message.message_id,
        chat_type=chat.type,
        chat_title=clean((chat.title or "")[:300]),
        reply_to_message_id=replied,
        in_reply_to=str(event_id_for(Channel.TELEGRAM.value, replied)) if replied else None,
        media_group_id=clean(message.media_group_id),
    )
    if edit:
        stamp = message.edit_date or message.date
        pmid = f"{original}:edit:{stamp}"
        occurred = _when(stamp)
        revision: Revision | None = Revision(of=original, action="edit")
    else:
        pmid, occurred, revision = original, _when(message.date), None
    interaction = _create(
        channel=Channel.TELEGRAM,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        occurred_at=occurred,
        received_at=received_at,
        identities=[_identity(bot, user)],
        thread=ThreadRef(id=f"{bot}:{chat.id}", reply_to=replied),
        text=text[:MAX_TEXT] if text else None,
        language=_language(user),
        attachments=attachments,
        provider_message_id=pmid,
        provider_ids={"chat_id": str(chat.id), "message_id": str(message.message_id)},
        source=source,
        revises=revision,
        attributes={k: v for k, v in attributes.items() if v is not None},
    )
    # An edit changes the original's text; its files, if any, stay the original's.
    return Parsed(interaction, () if edit else tuple(files), {} if edit else inline)


def _callback(
    update: Update,
    query: CallbackQuery,
    bot: str,
    groups: GroupPolicy,
    received_at: datetime,
    source: str,
) -> Parsed:
    user = query.from_
    message = query.message
    if message is not None and message.chat.type in GROUP_CHATS and groups == "ignore":
        raise Ignored(f"a button pressed in a {message.chat.type} chat (TELEGRAM_GROUPS=ignore)")
    if query.data is None:
        raise Ignored("a callback query without data (a game button)")
    chat = message.chat.id if message is not None else user.id
    pressed_on = message_id(bot, chat, message.message_id) if message is not None else None
    data = clean(query.data) or ""
    attributes: dict[str, Scalar] = {
        **_sender(user),
        "update_id": update.update_id,
        "callback_data": data,
        "button_on": pressed_on,
    }
    return Parsed(
        _create(
            channel=Channel.TELEGRAM,
            direction=Direction.INBOUND,
            kind=Kind.MESSAGE,
            occurred_at=received_at,
            received_at=received_at,
            identities=[_identity(bot, user)],
            thread=ThreadRef(id=f"{bot}:{chat}", reply_to=pressed_on),
            text=data or None,
            language=_language(user),
            provider_message_id=f"{bot}:callback:{query.id}",
            provider_ids={"callback_query_id": clean(query.id) or query.id},
            source=source,
            attributes={k: v for k, v in attributes.items() if v is not None},
        )
    )


def parse_update(
    body: bytes, *, bot: str | None, groups: GroupPolicy, received_at: datetime, source: str
) -> Parsed:
    """The interaction of one update; ParseError (or Ignored) with the reason when it can be
    none."""
    if not bot:
        raise ParseError("TELEGRAM_BOT_TOKEN is not set: the bot's identities cannot be scoped")
    raw, update = read_update(body)
    if update.message is not None:
        return _message(update, update.message, bot, groups, received_at, source, edit=False)
    if update.edited_message is not None:
        edited = update.edited_message
        return _message(update, edited, bot, groups, received_at, source, edit=True)
    if update.callback_query is not None:
        return _callback(update, update.callback_query, bot, groups, received_at, source)
    if update.channel_post is not None or update.edited_channel_post is not None:
        if groups == "ignore":
            raise Ignored("a channel post (TELEGRAM_GROUPS=ignore)")
        raise Ignored("a channel post has no sender user to put it on a timeline")
    raise Ignored(f"a {_kind(raw)!r} update, which the hub does not read")

"""The customer page's timeline: items across channels, grouped into conversations.

The same view model feeds the server-rendered page (Jinja) and the JSON the page's script
fetches on a live notification, so both show the same thing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from channels import registry
from services.console import handlog
from services.customers import store
from services.dispatcher.send import MAYBE_TWICE

#: The console shows the newest items; older ones are in the API (keyset paging).
LIMIT = 200
#: Image types shown inline as thumbnails (raster only: never SVG, never HTML).
INLINE_IMAGES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


def channel_label(channel: str) -> str:
    """How agents see a channel's name: its adapter's label (the hand log's own)."""
    return handlog.LABEL if channel == handlog.CHANNEL else registry.label(channel)


def channel_icon(channel: str) -> str:
    """The symbol agents see beside a channel's name (the adapter's; the hand log's own)."""
    return handlog.ICON if channel == handlog.CHANNEL else registry.icon(channel)


@dataclass
class Conversation:
    """Items of one thread (or one channel and address), oldest first."""

    key: str
    title: str
    items: list[dict[str, Any]] = field(default_factory=list)

    @property
    def last_at(self) -> str:
        """When the conversation last moved (ISO 8601)."""
        return str(max(item["when_iso"] for item in self.items))

    def as_json(self) -> dict[str, Any]:
        """What the page's script reads."""
        return {"key": self.key, "title": self.title, "items": self.items}


def when(iso: str) -> str:
    """A timestamp as agents read it (UTC, to the minute)."""
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M UTC")


def _attachment(found: dict[str, Any], event_id: str, position: int) -> dict[str, Any]:
    parts = [found.get("name") or "attachment", found.get("content_type") or ""]
    if found.get("size") is not None:
        parts.append(f"{found['size']} bytes")
    url = found.get("url") or ""
    safe_url = url if url.startswith(("https://", "http://")) else None
    image = None
    if found.get("blob"):  # in the hub's blob store: served to agents only
        safe_url = f"/console/messages/{event_id}/files/{position}"
        if inline_image(found.get("content_type")):  # shown as a thumbnail
            image = f"/console/messages/{event_id}/images/{position}"
    return {"label": " · ".join(p for p in parts if p), "url": safe_url, "image": image}


def missing_file(found: dict[str, Any]) -> bool:
    """Whether a stored attachment is a platform's file the hub does not have: listed
    without its ``blob`` but naming where the platform keeps it (an id, an http(s) address),
    so it can be fetched again (a location's ``geo:`` address is no file)."""
    url = found.get("url") or ""
    return not found.get("blob") and bool(
        found.get("provider_id") or url.startswith(("https://", "http://"))
    )


def _refetch(raw: dict[str, Any], attributes: dict[str, Any]) -> list[dict[str, str]]:
    """The files of a message whose media could not be fetched that an agent may ask for
    again (``POST /console/messages/<event>/files/<n>/retry``)."""
    if not _media_unavailable(attributes):
        return []
    return [
        {
            "url": f"/console/messages/{raw['event_id']}/files/{position}/retry",
            "name": str(found.get("name") or f"attachment {position}"),
        }
        for position, found in enumerate(raw["attachments"], start=1)
        if missing_file(found)
    ]


def inline_image(content_type: Any) -> str | None:
    """The type of a file the console shows inline (raster images only: an SVG can carry
    script), else None."""
    found = str(content_type or "").split(";")[0].strip().lower()
    return found if found in INLINE_IMAGES else None


def _handle(attributes: dict[str, Any]) -> str | None:
    """The sender's handle on their platform, as they are mentioned there (``@name``)."""
    found = _text(attributes, "sender_handle") or _text(attributes, "username")
    if found is None:
        return None
    return found if found.startswith("@") else f"@{found}"


def _media_unavailable(attributes: dict[str, Any]) -> str | None:
    """Why files of the message could not be fetched from the platform (adapters say it in
    ``media_unavailable``, a reason or a count, with the reasons in ``media_error``)."""
    flag = attributes.get("media_unavailable")
    if not flag:
        return None
    return _text(attributes, "media_error") or _text(attributes, "media_unavailable") or "unknown"


def _reaction(attributes: dict[str, Any]) -> dict[str, str] | None:
    """A reaction to another message (``reaction_to`` its provider message id)."""
    to = _text(attributes, "reaction_to")
    if to is None:
        return None
    emoji = _text(attributes, "reaction") or ""
    action = _text(attributes, "reaction_action") or ("react" if emoji else "unreact")
    return {"to": to, "emoji": emoji, "action": action}


def _text(attributes: dict[str, Any], key: str) -> str | None:
    value = attributes.get(key)
    return value if isinstance(value, str) and value else None


def item_view(raw: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    """One timeline item, display-ready."""
    first = raw["identities"][0] if raw["identities"] else {}
    department = raw["department"]
    if raw["channel"] == handlog.CHANNEL and attributes.get("department"):
        department = str(attributes["department"])  # chosen by the agent who logged it
    delivery = raw.get("delivery")
    return {
        "event_id": raw["event_id"],
        "when": when(raw["occurred_at"]),
        "when_iso": raw["occurred_at"],
        "channel": raw["channel"],
        "channel_label": channel_label(raw["channel"]),
        "channel_icon": channel_icon(raw["channel"]),
        "direction": raw["direction"],
        "kind": raw["kind"],
        "department": department,
        "language": raw["language"],
        "subject": raw["subject"],
        "text": raw["text"],
        "address": first.get("value"),
        "identity": first or None,
        "attachments": [
            _attachment(a, raw["event_id"], position)
            for position, a in enumerate(raw["attachments"], start=1)
        ],
        # what channels add: the quoted history below the new part, the message's own HTML,
        # who else it was sent to, a sender whose address failed authentication, mail a
        # machine sent
        "history": _text(attributes, "history"),
        "has_html": isinstance(attributes.get("html_blob"), str),
        "sender_name": _text(attributes, "sender_name"),
        "participants": _text(attributes, "participants"),
        "unverified": _text(attributes, "sender_unverified"),
        "automatic": _text(attributes, "automatic"),
        "delivery": (
            {
                "state": delivery["state"] or "queued",
                "error": " ".join(
                    p for p in (delivery.get("error_code"), delivery.get("error")) if p
                ),
            }
            if delivery is not None
            else None
        ),
        "logged_by": attributes.get("logged_by"),
        "in_reply_to": attributes.get("in_reply_to"),
        # the dispatcher's flag on the hub's own sends; an inbound message's attributes are
        # the sender's and say nothing about our sending
        "maybe_twice": raw["direction"] == "outbound" and attributes.get(MAYBE_TWICE) is True,
        "thread_id": raw["thread_id"],
        # what the sender did to it since: edited (the earlier versions below), or deleted
        "edited_at": _text(attributes, "edited_at"),
        "deleted_at": _text(attributes, "deleted_at"),
        "revised": _text(attributes, "deleted_at") or _text(attributes, "edited_at") or "",
        "earlier": [],
        # social platforms: the sender's handle, files the platform would not give, a message
        # the company wrote in the platform's own app, reactions (folded onto their message)
        "sender_handle": _handle(attributes),
        "media_unavailable": _media_unavailable(attributes),
        "refetch": _refetch(raw, attributes),
        # changes once a file is stored, so the page's script redraws the item
        "files_key": "".join("1" if a.get("blob") else "0" for a in raw["attachments"]),
        "sent_from": (
            f"Sent from the {channel_label(raw['channel'])} app, not from the hub"
            if raw["direction"] == "outbound" and attributes.get("sent_from")
            else None
        ),
        "provider_ids": [raw["provider_message_id"]] if raw.get("provider_message_id") else [],
        "reaction": _reaction(attributes),
        "reactions": [],
        "reactions_key": "",
    }


def fold_reactions(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items without the reactions to shown messages, each reaction shown on its message
    instead ("❤ by the customer"; the latest of each reactor, none once taken back). A
    reaction to a message not shown stays an item of its own."""
    by_provider = {pid: item for item in items for pid in item["provider_ids"]}
    latest: dict[tuple[str, str], tuple[dict[str, Any], dict[str, Any]]] = {}
    kept = []
    for item in sorted(items, key=lambda i: (i["when_iso"], i["event_id"])):
        target = by_provider.get(item["reaction"]["to"]) if item["reaction"] else None
        if target is None or target is item:
            kept.append(item)
            continue
        latest[(target["event_id"], f"{item['direction']}:{item['address']}")] = (target, item)
    for target, found in latest.values():
        reaction = found["reaction"]
        if reaction["action"] == "unreact" or not reaction["emoji"]:
            continue
        by = "the customer" if found["direction"] == "inbound" else "us"
        target["reactions"].append({"emoji": reaction["emoji"], "by": by})
    for target, _ in latest.values():
        target["reactions_key"] = " ".join(r["emoji"] for r in target["reactions"]) or "-"
    return kept


def _key(item: dict[str, Any], keys: dict[str, str]) -> str:
    """The conversation of an item: its thread's; else the one of the item it answers (a
    message sent on another channel in place of a chat joins the chat); else its channel and
    address. A thread that began by answering another conversation stays in it."""
    answered = keys.get(item["in_reply_to"] or "")
    if item["thread_id"]:
        thread = f"thread:{item['channel']}:{item['thread_id']}"
        found = keys.get(thread)
        if found is None:
            found = keys[thread] = answered or thread
        return found
    if answered:
        return answered
    if item["channel"] == handlog.CHANNEL:
        return f"manual:{item['event_id']}"
    return f"{item['channel']}:{item['address'] or ''}"


def _title(item: dict[str, Any]) -> str:
    if item["channel"] == handlog.CHANNEL:
        return f"{handlog.LABEL}: {item['kind']}"
    if item["thread_id"] and item["subject"]:
        return f"{item['channel_label']} · {item['subject']}"
    return f"{item['channel_label']} · {item['address'] or 'unknown address'}"


def group(items: list[dict[str, Any]]) -> list[Conversation]:
    """Group items into conversations, reactions on their messages; the most recently active
    conversation comes first."""
    keys: dict[str, str] = {}
    conversations: dict[str, Conversation] = {}
    for item in fold_reactions(items):
        key = _key(item, keys)
        keys[item["event_id"]] = key
        conversation = conversations.setdefault(key, Conversation(key, _title(item)))
        conversation.items.append(item)
    return sorted(conversations.values(), key=lambda c: c.last_at, reverse=True)


async def load(
    conn: asyncpg.Connection, customer_id: uuid.UUID, deleted_text: bool = False
) -> list[Conversation]:
    """The customer's newest items (up to LIMIT), as conversations; the text a sender deleted
    only with ``deleted_text`` (admins, where the hub keeps it)."""
    page = await store.timeline_page(conn, customer_id, LIMIT, None)
    shown = [item["event_id"] for item in page["items"]]
    rows = await conn.fetch(
        "SELECT event_id::text, interaction->'attributes' AS attributes FROM timeline"
        " WHERE event_id = ANY($1::uuid[])",
        shown,
    )
    attributes = {r["event_id"]: r["attributes"] or {} for r in rows}
    items = [item_view(i, attributes.get(i["event_id"], {})) for i in page["items"]]
    # a reaction to one of our replies names the id the platform gave it when it was sent
    commands = {i["command_id"]: i["event_id"] for i in page["items"] if i.get("command_id")}
    if commands:
        sent = await conn.fetch(
            "SELECT command_id::text, provider_message_id FROM outbound_messages"
            " WHERE command_id = ANY($1::uuid[]) AND provider_message_id IS NOT NULL",
            list(commands),
        )
        by_event = {i["event_id"]: i for i in items}
        for row in sent:
            by_event[commands[row["command_id"]]]["provider_ids"].append(row["provider_message_id"])
    earlier = await revisions(conn, [i["event_id"] for i in items if i["revised"]], deleted_text)
    for item in items:
        item["earlier"] = earlier.get(item["event_id"], [])
    return group(items)


async def revisions(
    conn: asyncpg.Connection, event_ids: list[str], deleted_text: bool
) -> dict[str, list[dict[str, Any]]]:
    """The earlier versions of edited or deleted items, oldest first."""
    if not event_ids:
        return {}
    rows = await conn.fetch(
        "SELECT event_id::text, action, revised_at, previous_text FROM timeline_revisions"
        " WHERE event_id = ANY($1::uuid[]) ORDER BY revised_at",
        event_ids,
    )
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        text = row["previous_text"]
        if row["action"] == "delete" and not deleted_text:
            text = None
        if text is None:
            continue
        found.setdefault(row["event_id"], []).append(
            {
                "action": row["action"],
                "when": row["revised_at"].strftime("%Y-%m-%d %H:%M UTC"),
                "text": text,
            }
        )
    return found


def channels_used(conversations: list[Conversation]) -> list[str]:
    """Channels the customer was in touch on, most recent first."""
    seen: dict[str, None] = {}
    for conversation in conversations:
        for item in reversed(conversation.items):
            seen.setdefault(item["channel"], None)
    return list(seen)


def find_item(conversations: list[Conversation], event_id: str) -> dict[str, Any] | None:
    """An item by event id, if shown."""
    for conversation in conversations:
        for item in conversation.items:
            if item["event_id"] == event_id:
                return item
    return None

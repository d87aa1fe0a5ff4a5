"""A parsed message to what the hub publishes: an interaction, a delivery state (a bounce),
or nothing (our own message coming back). Pure: the caller stores the files and publishes.

The same message reaching the hub by SMTP, IMAP and a webhook normalises to the same event
(the event id derives from the Message-ID) and the same blob ids, so it is stored once.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from channels.base import UNRESOLVED_COMMAND, ChannelEvent, blob_id
from channels.email.config import EmailSettings, Inbox
from channels.email.mime import ParsedEmail
from channels.email.threads import ThreadSigner, thread_token, unsigned_thread
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
from schemas.events import MAX_TEXT
from schemas.ids import event_id_for

#: The most attachments one event lists (the contract's limit); the rest are counted.
MAX_ATTACHMENTS = 100
#: The HTML body is kept as blob 0; attachments are 1 and up.
HTML_BLOB = 0
#: A Date header further from the time of receipt than this is not believed.
_DATE_PAST, _DATE_FUTURE = timedelta(days=30), timedelta(days=1)
#: Quoted history kept beside the new part (the rest of a very long thread is in the HTML).
MAX_HISTORY = 50_000
_REFERENCES_KEPT = 20
_ATTRIBUTE_LIMIT = MAX_HISTORY
#: What an opaque identity value may hold (schemas.identities); other addresses are hashed.
_OPAQUE = re.compile(r"^[\w.:@+\-/=]{1,256}$")
#: A reply's subject prefix (a forward's starts a conversation of its own).
_REPLY = re.compile(
    r"^\s*(?:re|aw|sv|antw|res|rv|ответ|отв)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]", re.IGNORECASE
)
#: The scope of a sender whose From failed DMARC: a customer of its own, linked to nobody.
UNVERIFIED_SCOPE = "email-dmarc-fail"


class NoSender(ValueError):
    """Neither From nor the envelope names who sent the message: it cannot be a customer's."""


class UnknownBounce(ValueError):
    """A delivery failure report about no message the hub can identify as its own."""


@dataclass(frozen=True)
class Envelope:
    """What the transport said beside the message: the SMTP envelope, or its equivalent."""

    via: str
    """How it came: ``smtp``, ``imap:<account>``, ``mailgun``, …"""
    mail_from: str | None = None
    recipients: tuple[str, ...] = ()


@dataclass
class Normalised:
    """What to store and publish for one message."""

    events: list[ChannelEvent] = field(default_factory=list)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    """``(blob id, bytes)`` to store before the events are published."""
    echo: bool = False
    """Our own message coming back: nothing is published."""


def normalise(
    parsed: ParsedEmail,
    envelope: Envelope,
    *,
    settings: EmailSettings,
    signer: ThreadSigner,
    received_at: datetime,
) -> Normalised:
    """The events of one parsed message; NoSender or UnknownBounce when it can be neither an
    interaction nor a delivery state (the caller dead-letters it with the reason)."""
    if signer.thread_of_message_id(parsed.message_id) is not None:
        return Normalised(echo=True)
    if parsed.bounce is not None:
        return Normalised(events=_bounce(parsed, signer, received_at))
    return _interaction(parsed, envelope, settings, signer, received_at)


def _bounce(parsed: ParsedEmail, signer: ThreadSigner, received_at: datetime) -> list[ChannelEvent]:
    report = parsed.bounce
    assert report is not None
    original = report.original_message_id
    command = signer.command_of_message_id(original) if original else None
    if original is None or (command is None and report.action != "delayed"):
        raise UnknownBounce(
            f"delivery report ({report.status or 'no status'}) about "
            f"{original or 'a message it does not name'}, which the hub did not send"
        )
    if report.action == "delayed":
        return []  # a warning: delivery is still being tried, the state does not change
    return [
        DeliveryStatus(
            command_id=command or UNRESOLVED_COMMAND,
            channel=Channel.EMAIL,
            state=DeliveryState.FAILED if report.hard else DeliveryState.UNDELIVERED,
            occurred_at=received_at,
            provider_message_id=original,
            error_code=report.status,
            undeliverable=_address_identity(report.recipients) if report.hard else None,
            error_message=_bounded(
                f"{', '.join(report.recipients)}: {report.diagnostic or 'delivery failed'}", 2000
            ),
        )
    ]


def _address_identity(addresses: Sequence[str]) -> Identity | None:
    """The first of ``addresses`` that is a valid email identity."""
    for address in addresses:
        try:
            return Identity(type=IdentityType.EMAIL, value=address)
        except ValueError:
            continue
    return None


def _interaction(
    parsed: ParsedEmail,
    envelope: Envelope,
    settings: EmailSettings,
    signer: ThreadSigner,
    received_at: datetime,
) -> Normalised:
    sender = parsed.from_address or _address(envelope.mail_from)
    if not sender:
        raise NoSender("no From address and an empty envelope sender")
    addressed = tuple(dict.fromkeys((*envelope.recipients, *parsed.to, *parsed.cc)))
    inboxes, signed = _inboxes_and_thread(addressed, settings, signer)
    signed = _thread_of_references(parsed, signer) or signed
    thread = signed or _unsigned(parsed, sender)
    new, history = parsed.new_part()
    occurred = parsed.date if parsed.date and _believable(parsed.date, received_at) else None
    event_id = event_id_for(Channel.EMAIL.value, parsed.message_id)
    files, attachments = _files(parsed, event_id, settings.max_attachment_bytes)
    attributes = _attributes(parsed, envelope, inboxes, history, settings)
    if parsed.html is not None:
        html_blob = blob_id(event_id, HTML_BLOB)
        files.append((html_blob, parsed.html.encode("utf-8", "replace")))
        attributes["html_blob"] = html_blob
    topic = parsed.normalized_subject.casefold()[:200]
    if topic:
        # the timeline joins a reply whose client dropped every reference to the customer's
        # latest conversation of the same subject (services/processors/timeline.py)
        attributes["thread_subject"] = topic
        guess = not signed and not parsed.references and not parsed.in_reply_to
        if guess and _REPLY.match(parsed.subject or ""):
            attributes["thread_guess"] = True
    hint = next((i.department for i in inboxes if i.department is not None), None)
    if hint is not None:
        attributes["department_hint"] = hint.value
    interaction = Interaction.create(
        event_id=event_id,
        channel=Channel.EMAIL,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        received_at=received_at,
        occurred_at=occurred or received_at,
        identities=[_identity(sender, parsed.dmarc_failed)],
        thread=ThreadRef(id=thread, reply_to=parsed.in_reply_to),
        subject=_bounded(parsed.subject, 998) if parsed.subject else None,
        text=_bounded(new, MAX_TEXT) or None,
        attachments=attachments,
        provider_message_id=parsed.message_id,
        source="channels/email",
        attributes=attributes,
    )
    return Normalised(events=[interaction], files=files)


def _files(
    parsed: ParsedEmail, event_id: uuid.UUID, max_bytes: int
) -> tuple[list[tuple[str, bytes]], list[Attachment]]:
    """The attachments' metadata and the blobs to store: one larger than ``max_bytes`` is
    listed without its bytes, and beyond the contract's 100 only the count is kept."""
    files: list[tuple[str, bytes]] = []
    attachments: list[Attachment] = []
    for index, part in enumerate(parsed.attachments[:MAX_ATTACHMENTS], start=1):
        blob = blob_id(event_id, index) if part.size <= max_bytes else None
        if blob is not None:
            files.append((blob, part.data))
        attachments.append(
            Attachment(
                name=_bounded(part.filename, 255) if part.filename else None,
                content_type=_bounded(part.content_type, 255),
                size=part.size,
                blob=blob,
                content_id=_bounded(part.content_id, 255) if part.content_id else None,
                inline=part.inline,
            )
        )
    return files, attachments


def _inboxes_and_thread(
    addressed: Sequence[str], settings: EmailSettings, signer: ThreadSigner
) -> tuple[list[Inbox], str | None]:
    """Our inboxes among the addresses (a signed reply address counts as its inbox), and the
    conversation a signed reply address carries."""
    inboxes: list[Inbox] = []
    thread = None
    for address in addressed:
        signed = signer.thread_of_address(address)
        if signed is not None:
            address, thread = signed[0], thread or signed[1]
        inbox = settings.inbox(address)
        if inbox is not None and inbox not in inboxes:
            inboxes.append(inbox)
    return inboxes, thread


def _thread_of_references(parsed: ParsedEmail, signer: ThreadSigner) -> str | None:
    """The conversation of the newest message of ours this one answers."""
    chain = [parsed.in_reply_to] if parsed.in_reply_to else []
    chain += reversed(parsed.references)
    return next((t for t in map(signer.thread_of_message_id, chain) if t is not None), None)


def _unsigned(parsed: ParsedEmail, sender: str) -> str:
    """The sender's own conversation: the chain's first message, or this one if it starts
    one (a forwarded message or a new subject has no references and starts anew)."""
    root = parsed.references[0] if parsed.references else parsed.in_reply_to
    return unsigned_thread(sender, root or parsed.message_id)


#: A subaddress (``support+thread.mac@``): what is left without it names the inbox.
_SUBADDRESS = re.compile(r"\+[^@]*@")


def _identity(address: str, dmarc_failed: bool) -> Identity:
    """The sender's identity; one that failed DMARC is a customer of its own (someone forging
    a customer's address must not get into that customer's history)."""
    if not dmarc_failed:
        return Identity(type=IdentityType.EMAIL, value=address)
    value = address if _OPAQUE.match(address) else thread_token(address)
    return Identity(type=IdentityType.EXTERNAL, scope=UNVERIFIED_SCOPE, value=value)


def _attributes(
    parsed: ParsedEmail,
    envelope: Envelope,
    inboxes: Sequence[Inbox],
    history: str,
    settings: EmailSettings,
) -> dict[str, str | int | float | bool | None]:
    ours = {i.address for i in inboxes}
    attributes: dict[str, str | int | float | bool | None] = {"email_via": envelope.via}
    # where the sender asks replies to go (a web form's mail, a list); not when the From
    # failed DMARC (a forger's Reply-To would receive the agent's answer), nor to ourselves
    reply_to = parsed.reply_to
    if reply_to and (parsed.dmarc_failed or settings.inbox(_SUBADDRESS.sub("@", reply_to))):
        reply_to = None
    optional = {
        "sender_name": parsed.from_name,
        "reply_to": reply_to,
        "inboxes": ", ".join(i.address for i in inboxes),
        "email_to": ", ".join(a for a in parsed.to if a not in ours),
        "participants": ", ".join(a for a in parsed.cc if a not in ours),
        "references": " ".join(parsed.references[-_REFERENCES_KEPT:]),
        "history": history,
        "automatic": parsed.automatic,
    }
    attributes.update({k: _bounded(v, _ATTRIBUTE_LIMIT) for k, v in optional.items() if v})
    for method, result in parsed.authentication.items():
        attributes[f"auth_{method}"] = result
    if parsed.dmarc_failed:
        attributes["sender_unverified"] = "DMARC failed: the From address may be forged"
    if len(parsed.attachments) > MAX_ATTACHMENTS:
        attributes["email_attachments_dropped"] = len(parsed.attachments) - MAX_ATTACHMENTS
    return attributes


def _believable(date: datetime, received_at: datetime) -> bool:
    return received_at - _DATE_PAST <= date <= received_at + _DATE_FUTURE


def _address(value: str | None) -> str | None:
    value = (value or "").strip().strip("<>").strip().lower()
    return value or None


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]

"""Delivery failure reports: which of our outbound messages failed, for whom, and why.

RFC 3464 reports (``multipart/report; report-type=delivery-status``) are read field by field;
the non-standard shapes older or odd servers send (qmail, Exim, Yahoo, Exchange, …) are left
to flufl.bounce, Mailman's maintained detectors, which give the recipients but no status.
A bounce updates the delivery state of the message it reports on; it is never a customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import policy
from email.message import Message
from email.parser import Parser

from flufl.bounce import all_failures

from channels.email import headers
from channels.email.charsets import decode
from channels.email.payload import payload_bytes, subparts

#: An RFC 3463 enhanced status code, as written in reports and diagnostics.
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SPACE = re.compile(r"\s+")
_BLOCKS = re.compile(r"\r?\n\s*\r?\n")
_ORIGINAL_ID = re.compile(r"^\s*Message-ID:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)
#: Reports of these actions are failures; "delivered", "relayed" and "expanded" are not.
_FAILED, _DELAYED = "failed", "delayed"
_DAEMON = re.compile(r"\b(?:mailer-?daemon|mail-daemon|postmaster)@", re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|returned mail|delivery (?:status notification|failure|has failed)"
    r"|failure notice|mail delivery failed|nondeliverable|non-delivery",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Bounce:
    """A delivery failure report about one message we sent."""

    recipients: tuple[str, ...]
    """The recipients it could not be delivered to (lower-cased)."""
    status: str | None
    """The first such recipient's RFC 3463 status code, e.g. ``"5.1.1"``."""
    diagnostic: str | None
    """What the refusing server said, e.g. ``"550 5.1.1 <x@y>: User unknown"``."""
    original_message_id: str | None
    """The Message-ID of our message, when the report returned its header fields."""
    hard: bool
    """A permanent failure (5.x.x): the address is undeliverable, not just busy or full."""
    action: str
    """``"failed"``, or ``"delayed"`` for a warning that delivery is still being tried."""
    standard: bool
    """An RFC 3464 report; False when recognised by flufl.bounce's heuristics."""


def bounce(msg: Message, text: str) -> Bounce | None:
    """The failure ``msg`` reports (``text`` is its decoded body), or None for any other mail,
    including reports that every recipient was delivered."""
    if _is_report(msg):
        return _report(msg)
    if _looks_like_bounce(msg):
        return _heuristic(msg, text)
    return None


def _is_report(msg: Message) -> bool:
    try:
        report_type = msg.get_param("report-type")
        return msg.get_content_type() == "multipart/report" and (
            isinstance(report_type, str) and report_type.strip().lower() == "delivery-status"
        )
    except Exception:  # an unreadable Content-Type is no report
        return False


def _report(msg: Message) -> Bounce | None:
    parts = subparts(msg)
    status_part = next((p for p in parts if p.get_content_type().endswith("delivery-status")), None)
    if status_part is None:
        return None
    failed: list[tuple[str, str | None, str | None]] = []
    delayed: list[tuple[str, str | None, str | None]] = []
    for block in _blocks(status_part):
        recipient = _after_type(
            headers.raw(block, "Final-Recipient") or headers.raw(block, "Original-Recipient")
        )
        action = (headers.raw(block, "Action") or "").strip().lower()
        if not recipient or action not in (_FAILED, _DELAYED):
            continue
        diagnostic = _after_type(headers.raw(block, "Diagnostic-Code"))
        found = _STATUS.search(headers.raw(block, "Status") or "") or _STATUS.search(
            diagnostic or ""
        )
        entry = (recipient.lower(), found.group(1) if found else None, diagnostic)
        (failed if action == _FAILED else delayed).append(entry)
    chosen, action = (failed, _FAILED) if failed else (delayed, _DELAYED)
    if not chosen:
        return None
    _, status, diagnostic = chosen[0]
    return Bounce(
        recipients=tuple(dict.fromkeys(r for r, _, _ in chosen)),
        status=status,
        diagnostic=diagnostic,
        original_message_id=_original_id(parts, ""),
        hard=action == _FAILED and (status.startswith("5") if status else True),
        action=action,
        standard=True,
    )


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a delivery-status part, parsed by the email package when it could,
    else from its decoded text (a base64-encoded report, say)."""
    blocks = subparts(part)
    if blocks:
        return blocks
    parser = Parser(policy=policy.compat32)
    text = decode(payload_bytes(part), None)
    return [parser.parsestr(block, headersonly=True) for block in _BLOCKS.split(text)]


def _after_type(value: str | None) -> str | None:
    """``"rfc822; a@b"`` -> ``"a@b"``: the value after its type, whitespace collapsed."""
    if not value:
        return None
    _, _, rest = value.partition(";")
    cleaned = _SPACE.sub(" ", rest or value).strip().strip("<>").strip()
    return cleaned or None


def _original_id(parts: list[Message], text: str) -> str | None:
    """The Message-ID of the returned message: from a returned message or header part, else
    from a "Message-ID:" line quoted in the report's text."""
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            for nested in subparts(part):
                ids = headers.message_ids(headers.raw(nested, "Message-ID"))
                if ids:
                    return ids[0]
        elif kind in ("text/rfc822-headers", "message/global-headers"):
            returned = Parser(policy=policy.compat32).parsestr(
                decode(payload_bytes(part), None), headersonly=True
            )
            ids = headers.message_ids(headers.raw(returned, "Message-ID"))
            if ids:
                return ids[0]
    found = _ORIGINAL_ID.search(text)
    return headers.message_ids(found.group(1))[0] if found else None


def _looks_like_bounce(msg: Message) -> bool:
    """Cheap signs (null sender, a daemon's From, a bounce's Subject) that make running the
    heuristic detectors worth it; raw fields suffice, as bounces come in plain ASCII."""
    return_path = (headers.raw(msg, "Return-Path") or "x").replace(" ", "")
    sender = headers.raw(msg, "From") or ""
    subject = headers.raw(msg, "Subject") or ""
    return (
        return_path == "<>" or bool(_DAEMON.search(sender)) or bool(_BOUNCE_SUBJECT.search(subject))
    )


def _heuristic(msg: Message, text: str) -> Bounce | None:
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a detector failing on odd input means no bounce was recognised
        return None
    addresses = permanent or temporary
    if not addresses:
        return None
    recipients = tuple(sorted(a.decode("utf-8", "replace").strip("<>").lower() for a in addresses))
    found = _STATUS.search(text)
    return Bounce(
        recipients=recipients,
        status=found.group(1) if found else None,
        diagnostic=None,
        original_message_id=_original_id(_all_parts(msg), text),
        hard=bool(permanent),
        action=_FAILED if permanent else _DELAYED,
        standard=False,
    )


def _all_parts(msg: Message) -> list[Message]:
    """Every part below ``msg`` (the returned message may sit inside a multipart/mixed)."""
    found: list[Message] = []
    stack = subparts(msg)
    while stack and len(found) < 1000:
        part = stack.pop(0)
        found.append(part)
        if part.get_content_maintype() == "multipart":
            stack.extend(subparts(part))
    return found

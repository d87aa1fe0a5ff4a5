"""Raw RFC 5322 mail to a ParsedEmail: pure (no I/O, no clock), never raising on bad mail.

SMTP, IMAP and the inbound webhooks all hand their raw bytes to :func:`parse`, so one message
reaching the hub three ways parses to one value with one deduplication key (``message_id``).
The only exception is :class:`UnparseableEmail`, for bytes that cannot be a message at all;
the caller dead-letters those with the reason and the raw bytes.

The MIME tree is split by the email package's parser under ``policy.compat32``, which keeps
every field as the bytes it came as; the fields the hub reads then go through
``policy.default``'s header classes (RFC 2047 words, RFC 6532 UTF-8, address lists) in
:mod:`channels.email.headers`. Splitting under ``policy.default`` parses Content-Type again
on every lookup and is 14 times slower (3.5 ms for a 2.4 KB message), which the SMTP
server's throughput target cannot afford.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import policy, utils
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser

from channels.base.html import sanitized_html
from channels.email import headers
from channels.email.authresults import authentication, dmarc_failed
from channels.email.automatic import automatic
from channels.email.bounces import Bounce, bounce
from channels.email.charsets import decode, storable
from channels.email.headers import normalized_subject
from channels.email.htmltext import html_to_text
from channels.email.payload import payload_bytes, subparts
from channels.email.quotes import new_part

__all__ = [
    "Bounce",
    "ParsedAttachment",
    "ParsedEmail",
    "UnparseableEmail",
    "new_part",
    "normalized_subject",
    "parse",
    "sanitized_html",
]

#: Deeper MIME nesting than this is kept as opaque attachments (no real mail comes close).
MAX_DEPTH = 40
#: Forwarded messages inside forwarded messages are parsed this deep, then kept as attachments.
MAX_FORWARD_DEPTH = 3
_TNEF = "application/ms-tnef"
_TNEF_TYPES = frozenset({_TNEF, "application/vnd.ms-tnef"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_PATH = re.compile(r"^.*[/\\]")


class UnparseableEmail(ValueError):
    """The bytes cannot be a message at all (empty, or no header field): dead-letter them."""


@dataclass(frozen=True)
class ParsedAttachment:
    """A part that is not the body: a file, an inline image, a returned or forwarded message."""

    filename: str | None
    """RFC 2231 and RFC 2047 decoded, without any directory part."""
    content_type: str
    size: int
    content_id: str | None
    """Without angle brackets: what a ``cid:`` URL in the HTML names."""
    inline: bool
    """Shown inside the HTML (``Content-Disposition: inline``, or a Content-ID and none)."""
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class ParsedEmail:
    """What the hub needs from one message. Addresses are lower-cased addr-specs."""

    message_id: str
    """Without angle brackets; ``sha256:<hex>`` of the raw bytes (line ends normalised) when
    the message has none, so a re-delivered copy still deduplicates."""
    in_reply_to: str | None
    references: tuple[str, ...]
    subject: str | None
    from_address: str | None
    from_name: str | None
    reply_to: str | None
    """The Reply-To address when it differs from From."""
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: datetime | None
    text: str
    """The plain-text body; for HTML-only mail, text derived from the HTML."""
    html: str | None
    """The HTML body as sent: show it only through :func:`sanitized_html`."""
    attachments: tuple[ParsedAttachment, ...]
    forwarded: tuple[ParsedEmail, ...]
    """Attached messages (message/rfc822), parsed; each is also in ``attachments``."""
    automatic: str | None
    """Why this is automatic mail (see :mod:`channels.email.automatic`), None from a person."""
    bounce: Bounce | None
    authentication: Mapping[str, str]
    """Our receiving server's verdicts: ``{"dkim": "pass", "spf": "pass", "dmarc": "fail"}``."""
    dmarc_failed: bool
    """The From domain failed DMARC: warn, and never link identities by this From."""

    @property
    def normalized_subject(self) -> str:
        """The subject without Re:/Fwd:/AW:/… prefixes: what threading by subject compares."""
        return normalized_subject(self.subject)

    def new_part(self) -> tuple[str, str]:
        """``(new, history)`` of the text body: see :func:`channels.email.quotes.new_part`."""
        return new_part(self.text)


def parse(raw: bytes, *, authserv_id: str | None = None) -> ParsedEmail:
    """Parse raw RFC 5322 bytes. ``authserv_id`` names our receiving server in
    Authentication-Results (default: whichever server added the topmost field).

    Raises :class:`UnparseableEmail` when ``raw`` cannot be a message; anything else, however
    malformed, parses, with replacement characters where bytes cannot be decoded.
    """
    data = bytes(raw).lstrip(b"\r\n")
    if not data.strip():
        raise UnparseableEmail("empty message")
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(data)
    except Exception as exc:  # the parser is lenient; whatever still defeats it is unparseable
        raise UnparseableEmail(f"not a message: {type(exc).__name__}: {exc}") from exc
    if not msg.keys():
        raise UnparseableEmail("no header fields: not a message")
    try:
        return _extract(msg, data, depth=0, authserv_id=authserv_id)
    except RecursionError as exc:
        raise UnparseableEmail("nested too deeply to parse") from exc


def _digest(data: bytes) -> str:
    normalised = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").strip()
    return "sha256:" + hashlib.sha256(normalised).hexdigest()


def _extract(msg: Message, data: bytes, *, depth: int, authserv_id: str | None) -> ParsedEmail:
    leaves = list(_leaves(msg))
    charset = next((c for c in (_param(p, "charset") for p in leaves) if c), None)
    body = _Body()
    for part in leaves:
        body.add(part, charset)
    ids = headers.message_ids(headers.raw(msg, "Message-ID", charset))
    senders = headers.mailboxes(msg, "From", charset)
    from_name, from_address = senders[0] if senders else ("", None)
    reply_to = next((a for _, a in headers.mailboxes(msg, "Reply-To", charset)), None)
    plain = "\n".join(body.plain)
    # an empty text alternative ("view this mail in HTML") says less than the HTML does
    text = plain if plain.strip() or body.html is None else html_to_text(body.html)
    results = authentication(msg, authserv_id) if depth == 0 else {}
    return ParsedEmail(
        message_id=ids[0] if ids else _digest(data),
        in_reply_to=next(iter(headers.message_ids(headers.raw(msg, "In-Reply-To"))), None),
        references=tuple(dict.fromkeys(headers.message_ids(headers.raw(msg, "References")))),
        subject=headers.text(msg, "Subject", charset),
        from_address=from_address,
        from_name=from_name or None,
        reply_to=reply_to if reply_to != from_address else None,
        to=tuple(dict.fromkeys(a for _, a in headers.mailboxes(msg, "To", charset))),
        cc=tuple(dict.fromkeys(a for _, a in headers.mailboxes(msg, "Cc", charset))),
        date=headers.date(msg),
        text=text,
        html=body.html,
        attachments=tuple(body.attachments),
        forwarded=tuple(
            _extract(nested, nested_raw, depth=depth + 1, authserv_id=None)
            for nested, nested_raw in body.messages
            if depth < MAX_FORWARD_DEPTH
        ),
        automatic=automatic(msg),
        bounce=bounce(msg, text) if depth == 0 else None,
        authentication=results,
        dmarc_failed=dmarc_failed(results),
    )


def _leaves(msg: Message) -> Iterator[Message]:
    """The parts below ``msg`` that are not containers, in order; message/* parts are leaves
    (attachments), so a forwarded message's body never becomes this message's body. A
    multipart the parser could not split is a leaf too (its text is the body)."""
    stack = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        split = isinstance(part.get_payload(), list)
        if _maintype(part) == "multipart" and split and depth < MAX_DEPTH:
            stack.extend((child, depth + 1) for child in reversed(subparts(part)))
        else:
            yield part


class _Body:
    """Sorts leaf parts into the text body, the HTML body and the attachments."""

    def __init__(self) -> None:
        self.plain: list[str] = []
        self.html: str | None = None
        self.attachments: list[ParsedAttachment] = []
        self.messages: list[tuple[Message, bytes]] = []

    def add(self, part: Message, charset: str | None) -> None:
        kind = _content_type(part)
        disposition = _disposition(part)
        filename = _filename(part, charset)
        if disposition != "attachment" and filename is None:
            unsplit = kind.startswith("multipart/") and not isinstance(part.get_payload(), list)
            if kind == "text/plain" or unsplit:
                self.plain.append(decode(payload_bytes(part), _param(part, "charset")))
                return
            if kind == "text/html":
                html = decode(payload_bytes(part), _param(part, "charset"))
                self.html = html if self.html is None else f"{self.html}\n{html}"
                return
        data = payload_bytes(part)
        if kind in _MESSAGE_TYPES:
            self.messages.extend((nested, data) for nested in subparts(part)[:1])
        if kind in _TNEF_TYPES or (filename or "").lower() == "winmail.dat":
            kind = _TNEF
        content_id = next(iter(headers.message_ids(headers.raw(part, "Content-ID"))), None)
        self.attachments.append(
            ParsedAttachment(
                filename=filename,
                content_type=kind,
                size=len(data),
                content_id=content_id,
                inline=disposition == "inline" or (disposition is None and content_id is not None),
                data=data,
            )
        )


def _maintype(part: Message) -> str:
    return _content_type(part).partition("/")[0]


def _content_type(part: Message) -> str:
    """The part's type; an unreadable one is opaque data (RFC 2045 §5.2)."""
    try:
        return part.get_content_type().lower()
    except Exception:  # the Content-Type classes fail on some malformed values
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # an unreadable disposition is no disposition
        return None


def _param(part: Message, name: str) -> str | None:
    """A Content-Type parameter, RFC 2231 encoded or not; None when absent or unreadable."""
    try:
        value = part.get_param(name)
        if isinstance(value, tuple):
            value = utils.collapse_rfc2231_value(value)
    except Exception:  # unreadable parameters are absent ones
        return None
    return value if isinstance(value, str) and value else None


def _filename(part: Message, charset: str | None) -> str | None:
    """The part's file name (RFC 2231 and, though non-standard, RFC 2047 decoded; raw 8-bit
    bytes decoded like header fields) without directories, so it is safe to store under."""
    try:
        name = part.get_filename()
    except Exception:  # unreadable parameters: no name
        return None
    if not name:
        return None
    if any("\udc80" <= ch <= "\udcff" for ch in name):
        name = headers.decode_raw(name, charset)
    name = _PATH.sub("", storable(_encoded_words(name))).strip()
    return name or None


def _encoded_words(name: str) -> str:
    """RFC 2047 words in a file name: not allowed there, but what many clients send."""
    if "=?" not in name:
        return name
    try:
        return str(make_header(decode_header(name)))
    except Exception:  # a broken encoded word stays as written
        return name

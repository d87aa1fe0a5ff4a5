"""A MIME part's content as bytes and its sub-parts, whatever state the part is in."""

from __future__ import annotations

from email import policy
from email.message import Message


def subparts(part: Message) -> list[Message]:
    """The parts directly inside ``part`` (a multipart's children, a message/* part's message
    or report blocks); none for a leaf or a multipart the parser could not split."""
    payload = part.get_payload()
    if not isinstance(payload, list):
        return []
    return [child for child in payload if isinstance(child, Message)]


def as_bytes(msg: Message) -> bytes:
    """``msg`` serialised as close to the bytes it came from as the email package allows
    (compat32 re-emits header fields as they were parsed)."""
    try:
        return msg.as_bytes(policy=policy.compat32)
    except Exception:  # the generator gives up on some malformed trees: its text then
        return _encoded(str(msg.get_payload()))


def payload_bytes(part: Message) -> bytes:
    """The decoded content of ``part`` (transfer encoding undone; message/* parts serialised);
    what a broken transfer encoding leaves is returned as it is, never an exception."""
    children = subparts(part)
    if children or isinstance(part.get_payload(), list):
        return b"\n".join(as_bytes(child) for child in children)
    try:
        data = part.get_payload(decode=True)
    except Exception:  # an unknown or broken transfer encoding: the undecoded content
        data = None
    if isinstance(data, bytes):
        return data
    raw = part.get_payload()
    return _encoded(raw) if isinstance(raw, str) else b""


def _encoded(text: str) -> bytes:
    """Text the parser read from bytes, back to those bytes (undecodable ones were escaped)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")

"""Postmark's inbound webhook: basic auth, and the message in its JSON.

Postmark does not sign its webhooks; it sends the basic-auth credentials written in the
webhook URL (``https://user:pass@host/...``) as an Authorization header, checked here in
constant time. With the inbound stream's "include raw email content" option the JSON carries
the message as it arrived in ``RawEmail``, handed on untouched; otherwise the message is
rebuilt from ``FromFull``, ``ToFull``, ``CcFull``, ``Subject``, ``Date``, ``Headers``,
``TextBody``, ``HtmlBody`` and ``Attachments`` ("Inbound webhook", postmarkapp.com).

Postmark's own ``MessageID`` is its id for the delivery, not the message's Message-ID (that
one is in ``Headers``); only for a message without one does it stand in, as
``<MessageID@postmark>``, so a retried webhook still deduplicates.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from email.utils import formataddr

from channels.base import InboundRequest, ParseError, SignatureError
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhook_mail import (
    JSON,
    Attachment,
    check_basic_auth,
    check_size,
    compose,
    has_header,
    json_object,
    merge_headers,
    require_media_type,
)

PROVIDER = "Postmark"
#: The domain of the Message-ID made from Postmark's MessageID for mail that has none.
SYNTHETIC_DOMAIN = "postmark"
#: ``-04:00`` as Postmark writes some zones; RFC 5322 says ``-0400``.
_COLON_ZONE = re.compile(r"([+-]\d{2}):(\d{2})\s*$")


def verify_postmark(request: InboundRequest, settings: InboundWebhookSettings) -> None:
    """Raise SignatureError unless the request carries the configured basic credentials.

    Also PayloadTooLarge over the limit and UnsupportedMediaType for a body that is not JSON.
    """
    credentials = settings.postmark_credentials()
    if credentials is None:
        raise SignatureError(
            "POSTMARK_INBOUND_USER and POSTMARK_INBOUND_PASSWORD are not set:"
            " Postmark webhooks are refused"
        )
    check_basic_auth(request, credentials, PROVIDER)
    check_size(request, settings.max_body_bytes)
    require_media_type(request, PROVIDER, JSON)


def raw_postmark(request: InboundRequest) -> bytes:
    """The raw RFC 5322 message of a verified request: ``RawEmail`` as it is, else rebuilt."""
    require_media_type(request, PROVIDER, JSON)
    data = json_object(request.body, PROVIDER)
    raw = _string(data, "RawEmail")
    if raw and raw.strip():
        return _encoded(raw)
    original = [(_required(h, "Name", i), _required(h, "Value", i)) for i, h in _headers(data)]
    headers = merge_headers(
        original,
        [
            ("From", _addresses(data, "FromFull") or _string(data, "From")),
            ("To", _addresses(data, "ToFull") or _string(data, "To")),
            ("Cc", _addresses(data, "CcFull") or _string(data, "Cc")),
            ("Reply-To", _string(data, "ReplyTo")),
            ("Subject", _string(data, "Subject")),
            ("Date", _date(_string(data, "Date"))),
        ],
    )
    postmark_id = (_string(data, "MessageID") or "").strip()
    if not has_header(headers, "Message-ID") and postmark_id and " " not in postmark_id:
        headers.append(("Message-ID", f"<{postmark_id}@{SYNTHETIC_DOMAIN}>"))
    text = _string(data, "TextBody") or None
    html = _string(data, "HtmlBody") or None
    if not headers and text is None and html is None:
        raise ParseError(f"{PROVIDER}: no message in the JSON (no RawEmail, headers or body)")
    return compose(headers, text, html, _attachments(data))


def _encoded(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        return text.encode("utf-8", "replace")


def _string(data: Mapping[str, object], key: str) -> str | None:
    """A string field, None when absent or null; ParseError when of another type."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    raise ParseError(f"{PROVIDER}: {key} is not a string")


def _required(data: Mapping[str, object], key: str, index: int) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise ParseError(f"{PROVIDER}: Headers[{index}].{key} is not a string")
    return value


def _objects(data: Mapping[str, object], key: str) -> list[tuple[int, Mapping[str, object]]]:
    """A list of objects (absent or null: empty); ParseError for anything else."""
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ParseError(f"{PROVIDER}: {key} is not a list of objects")
    return list(enumerate(value))


def _headers(data: Mapping[str, object]) -> list[tuple[int, Mapping[str, object]]]:
    return _objects(data, "Headers")


def _addresses(data: Mapping[str, object], key: str) -> str | None:
    """``FromFull`` (one object) or ``ToFull``/``CcFull`` (lists) as an address list."""
    value = data.get(key)
    if value is None:
        return None
    entries = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ParseError(f"{PROVIDER}: {key} is not an address object or a list of them")
    found = []
    for entry in entries:
        email, name = entry.get("Email"), entry.get("Name")
        if not isinstance(email, str) or not email.strip():
            continue
        found.append(formataddr((name if isinstance(name, str) else "", email.strip())))
    return ", ".join(found) or None


def _date(value: str | None) -> str | None:
    """The Date field with a ``-04:00`` zone written as RFC 5322's ``-0400``."""
    return _COLON_ZONE.sub(r"\1\2", value) if value else value


def _attachments(data: Mapping[str, object]) -> list[Attachment]:
    """``Attachments``: Name, base64 Content, ContentType, ContentID (inline when set)."""
    found = []
    for index, item in _objects(data, "Attachments"):
        name = item.get("Name")
        label = f"Attachments[{index}]" + (f" ({name!r})" if isinstance(name, str) else "")
        content = item.get("Content")
        if not isinstance(content, str):
            raise ParseError(f"{PROVIDER}: {label} has no base64 Content")
        try:
            payload = base64.b64decode("".join(content.split()), validate=True)
        except (binascii.Error, ValueError):
            raise ParseError(f"{PROVIDER}: {label} Content is not valid base64") from None
        kind, cid = item.get("ContentType"), item.get("ContentID")
        found.append(
            Attachment(
                filename=name if isinstance(name, str) and name else None,
                content_type=kind if isinstance(kind, str) and kind else "application/octet-stream",
                data=payload,
                content_id=cid if isinstance(cid, str) and cid else None,
                inline=isinstance(cid, str) and bool(cid.strip()),
            )
        )
    return found

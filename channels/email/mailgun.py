"""Mailgun's inbound route ``forward()`` to a URL: its signature, and the message it carries.

Mailgun posts ``application/x-www-form-urlencoded``, or ``multipart/form-data`` when the mail
has attachments (``attachment-1`` .. ``attachment-N`` as files). The fields ``timestamp``,
``token`` and ``signature`` prove the origin: ``signature`` is the hex HMAC-SHA256 of
timestamp + token under the account's HTTP webhook signing key ("Securing Webhooks",
documentation.mailgun.com). The body itself is not signed, so a captured triple is refused
once its timestamp is stale (``MAILGUN_MAX_AGE_SECONDS``) and, within that window, once its
token has been seen (an in-process :class:`ReplayGuard`).

A route whose URL ends in ``mime`` gets the message as it arrived, in ``body-mime``
("Receiving Messages via HTTP"); configure ``.../channels/email/mailgun/mime`` (or any URL
of ours ending in ``mime``). Otherwise the message is rebuilt from the parsed fields.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from channels.base import InboundRequest, ParseError, SignatureError, UnsupportedMediaType
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhook_mail import (
    FORM,
    MULTIPART,
    Attachment,
    Form,
    ReplayGuard,
    bracketed,
    check_size,
    compose,
    declared_count,
    fresh,
    merge_headers,
    numbered_files,
    read_form,
)

PROVIDER = "Mailgun"
#: Tokens of accepted requests, shared by every call that passes no guard of its own.
RECENT_TOKENS = ReplayGuard()
#: The parsed fields a message is rebuilt from when ``message-headers`` lacks them.
FALLBACK_FIELDS = (
    ("From", ("from", "sender")),
    ("To", ("To", "recipient")),
    ("Cc", ("Cc",)),
    ("Subject", ("subject",)),
    ("Date", ("Date",)),
    ("Message-ID", ("Message-Id",)),
    ("In-Reply-To", ("In-Reply-To",)),
    ("References", ("References",)),
)


def verify_mailgun(
    request: InboundRequest,
    settings: InboundWebhookSettings,
    *,
    now: float | None = None,
    seen: ReplayGuard | None = None,
) -> None:
    """Raise SignatureError unless Mailgun signed this request, recently, and only once.

    Also UnsupportedMediaType for a body that is not a form, PayloadTooLarge over the limit.
    """
    key = settings.mailgun_key()
    if not key:
        raise SignatureError("MAILGUN_WEBHOOK_SIGNING_KEY is not set: Mailgun webhooks are refused")
    check_size(request, settings.max_body_bytes)
    try:
        form = read_form(request, PROVIDER, FORM, MULTIPART)
    except UnsupportedMediaType:
        raise
    except ParseError as exc:
        raise SignatureError(f"no signature can be read from the body: {exc}") from None
    values = {name: form.text(name) for name in ("timestamp", "token", "signature")}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise SignatureError(f"{PROVIDER}: no {', '.join(missing)} field in the body")
    timestamp, token, signature = (values[n] or "" for n in ("timestamp", "token", "signature"))
    expected = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    given = signature.strip().lower().encode("utf-8", "replace")
    if not hmac.compare_digest(expected.encode("ascii"), given):
        raise SignatureError(f"{PROVIDER}: the signature does not match timestamp and token")
    clock = time.time() if now is None else now
    max_age = settings.mailgun_max_age_seconds
    when = fresh(timestamp, clock, max_age, PROVIDER)
    if not (RECENT_TOKENS if seen is None else seen).first_use(
        token, when, now=clock, max_age=max_age
    ):
        raise SignatureError(f"{PROVIDER}: token already used (a replayed request)")


def raw_mailgun(request: InboundRequest) -> bytes:
    """The raw RFC 5322 message of a verified request: ``body-mime`` as it is, else rebuilt
    from ``message-headers`` (every original header, Message-Id included), the parsed fields,
    ``body-plain``, ``body-html`` and the attachments."""
    form = read_form(request, PROVIDER, FORM, MULTIPART)
    mime = form.get("body-mime")
    if mime is not None and mime.value.strip():
        return mime.value
    original = _message_headers(form)
    headers = merge_headers(original, _fallbacks(form))
    text, html = form.text("body-plain"), form.text("body-html")
    if not headers and text is None and html is None:
        raise ParseError(
            f"{PROVIDER}: no message in the request (neither body-mime nor message-headers,"
            " from or body-plain)"
        )
    return compose(headers, text, html, _attachments(form))


def _message_headers(form: Form) -> list[tuple[str, str]]:
    """``message-headers``: a JSON list of [name, value] pairs, in the message's order."""
    data = form.json("message-headers", PROVIDER)
    if data is None:
        return []
    if not isinstance(data, list):
        raise ParseError(f"{PROVIDER}: message-headers is not a JSON list")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(data):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise ParseError(f"{PROVIDER}: message-headers[{index}] is not a [name, value] pair")
        pairs.append((item[0], item[1]))
    return pairs


def _fallbacks(form: Form) -> list[tuple[str, str | None]]:
    """Header fields from the parsed fields (the envelope's sender and recipient standing in
    for a missing From and To)."""
    found: list[tuple[str, str | None]] = []
    for header, names in FALLBACK_FIELDS:
        value = next((v for n in names if (v := form.text(n))), None)
        found.append((header, value))
    return found


def _attachments(form: Form) -> list[Attachment]:
    """``attachment-1`` .. ``attachment-N``, inline when ``content-id-map`` names them."""
    files = numbered_files(form, "attachment-")
    expected = declared_count(form, "attachment-count", PROVIDER)
    if len(files) < expected:
        raise ParseError(
            f"{PROVIDER}: attachment-count is {expected} but {len(files)} attachment(s) came"
        )
    cid_map = form.json("content-id-map", PROVIDER)
    content_ids: dict[str, str] = {}
    if isinstance(cid_map, dict):
        content_ids = {
            str(name).lower(): cid
            for cid, name in cid_map.items()
            if isinstance(name, str) and bracketed(cid)
        }
    return [
        Attachment(
            filename=item.filename,
            content_type=item.content_type or "application/octet-stream",
            data=item.value,
            content_id=content_ids.get(item.name.lower()),
            inline=item.name.lower() in content_ids,
        )
        for _, item in files
    ]

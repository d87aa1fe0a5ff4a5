"""SendGrid's Inbound Parse webhook: its credentials, and the message in its form.

Two ways to prove the origin, either or both (both configured: both required):

- basic auth written in the Parse URL (``https://user:pass@host/...``), sent as an
  Authorization header and checked in constant time;
- the signature of a webhook security policy ("Securing your Inbound Parse Webhooks",
  twilio.com/docs/sendgrid): ECDSA P-256/SHA-256 over the ``X-Twilio-Email-Event-Webhook-
  Timestamp`` header followed by the raw body, base64 in ``X-Twilio-Email-Event-Webhook-
  Signature``, checked with the policy's public key. The timestamp must be fresh and the
  signature is refused a second time (replay). The policy's OAuth mode is not supported: its
  bearer token could only be checked against the OAuth server.

The body is ``multipart/form-data``. With "POST the raw, full MIME message" the ``email``
field is the message as it arrived, handed on untouched; otherwise it is rebuilt from
``headers`` (the raw header block), ``text``, ``html`` and ``attachment1`` .. ``attachmentN``
(described by ``attachment-info``), each text field in the charset ``charsets`` names.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from email import policy
from email.parser import BytesParser

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from channels.base import InboundRequest, ParseError, SignatureError
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhook_mail import (
    MULTIPART,
    Attachment,
    Form,
    ReplayGuard,
    bracketed,
    check_basic_auth,
    check_size,
    compose,
    declared_count,
    fresh,
    merge_headers,
    numbered_files,
    read_form,
    require_media_type,
)

PROVIDER = "SendGrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
#: Signatures of accepted requests, shared by every call that passes no guard of its own.
RECENT_SIGNATURES = ReplayGuard()


def verify_sendgrid(
    request: InboundRequest,
    settings: InboundWebhookSettings,
    *,
    now: float | None = None,
    seen: ReplayGuard | None = None,
) -> None:
    """Raise SignatureError unless the request carries what is configured: the basic
    credentials, the security policy's signature, or both. Also PayloadTooLarge over the
    limit, UnsupportedMediaType for a body that is not multipart/form-data."""
    credentials = settings.sendgrid_credentials()
    key = settings.sendgrid_key()
    if credentials is None and key is None:
        raise SignatureError(
            "neither SENDGRID_INBOUND_PUBLIC_KEY nor SENDGRID_INBOUND_USER and"
            " SENDGRID_INBOUND_PASSWORD are set: SendGrid webhooks are refused"
        )
    if credentials is not None:
        check_basic_auth(request, credentials, PROVIDER)
    check_size(request, settings.max_body_bytes)
    if key is not None:
        clock = time.time() if now is None else now
        _check_signature(request, key, clock, settings.sendgrid_max_age_seconds, seen)
    require_media_type(request, PROVIDER, MULTIPART)


def _check_signature(
    request: InboundRequest,
    key: ec.EllipticCurvePublicKey,
    now: float,
    max_age: int,
    seen: ReplayGuard | None,
) -> None:
    signature, timestamp = request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER)
    if not signature or not timestamp:
        raise SignatureError(f"{PROVIDER}: missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        decoded = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{PROVIDER}: {SIGNATURE_HEADER} is not base64") from None
    signed = timestamp.encode("utf-8", "replace") + request.body
    try:
        key.verify(decoded, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(f"{PROVIDER}: the signature does not match the body") from None
    when = fresh(timestamp, now, max_age, PROVIDER)
    digest = hashlib.sha256(decoded).hexdigest()
    if not (RECENT_SIGNATURES if seen is None else seen).first_use(
        digest, when, now=now, max_age=max_age
    ):
        raise SignatureError(f"{PROVIDER}: signature already used (a replayed request)")


def raw_sendgrid(request: InboundRequest) -> bytes:
    """The raw RFC 5322 message of a verified request: ``email`` as it is, else rebuilt."""
    require_media_type(request, PROVIDER, MULTIPART)
    form = read_form(request, PROVIDER, MULTIPART)
    raw = form.get("email")
    if raw is not None and raw.value.strip():
        return raw.value
    charsets = _charsets(form)
    original = _header_block(form)
    headers = merge_headers(
        original,
        [
            (name, form.text(field, charsets.get(field)))
            for name, field in (
                ("From", "from"),
                ("To", "to"),
                ("Cc", "cc"),
                ("Subject", "subject"),
            )
        ],
    )
    text = form.text("text", charsets.get("text"))
    html = form.text("html", charsets.get("html"))
    if not headers and text is None and html is None:
        raise ParseError(f"{PROVIDER}: no message in the request (no email, headers or text)")
    return compose(headers, text, html, _attachments(form))


def _charsets(form: Form) -> dict[str, str]:
    """``charsets``: the charset of each text field, e.g. ``{"text": "iso-8859-1"}``."""
    data = form.json("charsets", PROVIDER)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParseError(f"{PROVIDER}: charsets is not a JSON object")
    return {str(k).lower(): v for k, v in data.items() if isinstance(v, str)}


def _header_block(form: Form) -> list[tuple[str, str]]:
    """The ``headers`` field's raw header block as (name, value) pairs, values as parsed
    from the bytes (8-bit bytes kept, to be written back as they came)."""
    block = form.get("headers")
    if block is None or not block.value.strip():
        return []
    data = block.value.lstrip(b"\r\n").rstrip(b"\r\n") + b"\r\n\r\n"
    msg = BytesParser(policy=policy.compat32).parsebytes(data, headersonly=True)
    return [(name, str(value)) for name, value in msg.raw_items()]


def _attachments(form: Form) -> list[Attachment]:
    """``attachment1`` .. ``attachmentN``, named and typed by ``attachment-info``."""
    files = numbered_files(form, "attachment")
    expected = declared_count(form, "attachments", PROVIDER)
    if len(files) < expected:
        raise ParseError(f"{PROVIDER}: attachments is {expected} but {len(files)} file(s) came")
    info = form.json("attachment-info", PROVIDER)
    described = info if isinstance(info, dict) else {}
    ids = form.json("content-ids", PROVIDER)
    by_name = {v: k for k, v in ids.items() if isinstance(v, str)} if isinstance(ids, dict) else {}
    found = []
    for _, item in files:
        meta = described.get(item.name)
        meta = meta if isinstance(meta, dict) else {}
        filename = meta.get("filename") or meta.get("name") or item.filename
        kind = meta.get("type") or item.content_type or "application/octet-stream"
        given = meta.get("content-id") or by_name.get(item.name)
        cid = bracketed(given) if isinstance(given, str) else None
        found.append(
            Attachment(
                filename=filename if isinstance(filename, str) else item.filename,
                content_type=kind if isinstance(kind, str) else "application/octet-stream",
                data=item.value,
                content_id=cid,
                inline=cid is not None,
            )
        )
    return found

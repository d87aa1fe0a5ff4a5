"""Meta's two webhook checks: the subscription handshake (GET with ``hub.verify_token``) and
``X-Hub-Signature-256``, the HMAC-SHA256 of the raw body keyed with the app secret. Both are
compared in constant time; the raw bytes are what Meta signed (it escapes non-ASCII and ``/``
in what it sends, so re-serialised JSON would not match)."""

from __future__ import annotations

import hashlib
import hmac

from channels.base import InboundRequest, SignatureError

SIGNATURE_HEADER = "X-Hub-Signature-256"


def check_signature(request: InboundRequest, secret: bytes | None) -> None:
    """Raise SignatureError unless the body was signed with ``secret``."""
    if not secret:
        raise SignatureError("META_APP_SECRET is not set: Meta's signature cannot be checked")
    header = request.header(SIGNATURE_HEADER) or ""
    if not header:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    expected = "sha256=" + hmac.new(secret, request.body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), header.strip().lower().encode()):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def check_subscription(request: InboundRequest, verify_token: str | None) -> str:
    """The ``hub.challenge`` to echo when Meta's subscription check names our verify token;
    SignatureError otherwise."""
    if not verify_token:
        raise SignatureError("META_VERIFY_TOKEN is not set: the subscription cannot be checked")
    if request.query.get("hub.mode") != "subscribe":
        raise SignatureError("hub.mode is not subscribe")
    given = request.query.get("hub.verify_token", "")
    if not hmac.compare_digest(given.encode(), verify_token.encode()):
        raise SignatureError("hub.verify_token does not match META_VERIFY_TOKEN")
    challenge = request.query.get("hub.challenge", "")
    if not challenge or len(challenge) > 256:
        raise SignatureError("no usable hub.challenge")
    return challenge

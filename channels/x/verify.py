"""X's webhook checks: the CRC challenge's answer and ``x-twitter-webhooks-signature``, both
HMAC-SHA256 keyed with the app's consumer secret, base64, prefixed ``sha256=``."""

from __future__ import annotations

import base64
import hashlib
import hmac

from channels.base import SignatureError

SIGNATURE_HEADER = "x-twitter-webhooks-signature"
PREFIX = "sha256="


def digest(secret: str, message: bytes) -> str:
    """``sha256=`` and the base64 HMAC-SHA256 of ``message`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return PREFIX + base64.b64encode(mac).decode("ascii")


def crc_response(secret: str, crc_token: str) -> dict[str, str]:
    """The JSON X expects in answer to its CRC GET (``response_token``)."""
    return {"response_token": digest(secret, crc_token.encode())}


def check_signature(secret: str | None, body: bytes, given: str | None) -> None:
    """SignatureError unless ``given`` is the body's signature (constant-time comparison)."""
    if not secret:
        raise SignatureError("X_CONSUMER_SECRET is not set: no webhook can be trusted")
    if not given:
        raise SignatureError(f"missing {SIGNATURE_HEADER}")
    if not hmac.compare_digest(given.strip().encode(), digest(secret, body).encode()):
        raise SignatureError(f"wrong {SIGNATURE_HEADER}")

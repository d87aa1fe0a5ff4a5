"""HMAC-SHA256 body signatures (the header omnihub puts on what it POSTs to integrations)."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Omnihub-Signature"
PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """Return the header value ``sha256=<hex>`` for ``body``."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return PREFIX + digest


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Return True when ``header`` is the signature of ``body`` (constant-time compare)."""
    if not header or not header.startswith(PREFIX):
        return False
    return hmac.compare_digest(sign(secret, body), header)

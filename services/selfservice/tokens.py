"""Random tokens shown once to a browser, and the digests the database keeps instead."""

from __future__ import annotations

import hashlib
import secrets


def new_token() -> str:
    """32 random bytes, URL-safe: a sign-in link's token or a session id."""
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    """What the database keeps of a token (a leaked table signs nobody in)."""
    return hashlib.sha256(token.encode()).hexdigest()

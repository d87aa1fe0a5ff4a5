"""Identity keys as tuples, and advisory-lock numbers for them."""

from __future__ import annotations

import hashlib

from schemas import Identity

Key = tuple[str, str, str]


def key_of(identity: Identity) -> Key:
    """(type, scope, value) of an identity."""
    return (identity.type.value, identity.scope, identity.value)


def lock_id(key: Key) -> int:
    """A signed 64-bit advisory lock number for a key (same on every worker)."""
    digest = hashlib.blake2b("\x1f".join(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)

"""Secrets a channel signs with: the configured one, checked for length, else a development
key file made on first use under the data directory (readable by its owner only)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import SecretStr

#: The shortest signing key taken (~190 bits of a random key's base64).
MIN_KEY_CHARACTERS = 32


def checked_key(value: SecretStr | None, name: str) -> SecretStr | None:
    """``value`` for a settings validator: empty (an env file's ``NAME=``) is unset; one
    under ``MIN_KEY_CHARACTERS`` is refused, since anyone could guess it."""
    if value is None or not value.get_secret_value().strip():
        return None
    if len(value.get_secret_value()) < MIN_KEY_CHARACTERS:
        raise ValueError(f"{name} must be {MIN_KEY_CHARACTERS}+ characters")
    return value


def key_or_file(value: SecretStr | None, path: Path) -> bytes:
    """The configured key, else the key file at ``path`` (made now if missing)."""
    if value is not None:
        return value.get_secret_value().encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it meanwhile
            return path.read_text().strip().encode()
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip().encode()

"""The email settings refuse a signing key anyone could guess: an empty one (an env file's
``EMAIL_SIGNING_KEY=``) counts as unset, a short one is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from channels.email.config import EmailSettings


def test_an_empty_signing_key_is_unset_and_the_key_file_is_used(tmp_path: Path) -> None:
    settings = EmailSettings(EMAIL_SIGNING_KEY="  ", OMNIHUB_DATA_DIR=tmp_path)
    assert settings.signing_key is None
    key = settings.key()
    assert len(key) >= 32 and key == EmailSettings(OMNIHUB_DATA_DIR=tmp_path).key()


def test_a_short_signing_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="32"):
        EmailSettings(EMAIL_SIGNING_KEY="short-secret", OMNIHUB_DATA_DIR=tmp_path)
    long_enough = "k" * 32
    assert EmailSettings(EMAIL_SIGNING_KEY=long_enough).key() == long_enough.encode()

"""The email adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from channels.email import EmailAdapter
from tests.channels.email.support import settings


def adapter() -> EmailAdapter:
    """The adapter with the test inboxes and signing key (nothing started)."""
    return EmailAdapter(settings(Path(tempfile.mkdtemp(prefix="email-contract-"))))

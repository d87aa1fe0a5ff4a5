"""The web chat adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

from channels.webchat import WebchatAdapter
from channels.webchat.config import WebchatSettings
from tests.channels.webchat.support import SITES, VISITOR_KEY


def adapter() -> WebchatAdapter:
    """The adapter with the test sites and visitor key."""
    return WebchatAdapter(
        WebchatSettings.model_validate({"WEBCHAT_SITES": SITES, "WEBCHAT_VISITOR_KEY": VISITOR_KEY})
    )

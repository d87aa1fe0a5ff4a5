"""The API channel's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

from channels.api import ApiAdapter
from channels.api.adapter import INTERACTIONS
from channels.base import InboundRequest, Route, WebhookAdapter
from channels.base.adapter import Caller

JSON = {"Content-Type": "application/json"}
#: Who the framework authenticated (the bearer token is checked before the adapter).
CALLER = Caller("7d0c5a8e-0000-4000-8000-000000000001", "contract", frozenset({"api"}))


def adapter() -> WebhookAdapter:
    """The adapter as the contract tests use it."""
    return ApiAdapter()


def accepted() -> list[tuple[Route, InboundRequest]]:
    """Requests the adapter must verify and parse into events."""
    body = (
        b'{"identities": [{"type": "email", "value": "A@Example.com"}],'
        b' "text": "hi", "provider_message_id": "c-1"}'
    )
    url = "http://hub/v1/interactions"
    return [(INTERACTIONS, InboundRequest("POST", url, JSON, body, caller=CALLER))]


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Authentic requests the adapter must refuse to parse (ParseError)."""
    body = b'{"text": 1}'
    url = "http://hub/v1/interactions"
    return [(INTERACTIONS, InboundRequest("POST", url, JSON, body, caller=CALLER))]


def forged() -> list[tuple[Route, InboundRequest]]:
    """Requests verify must refuse: none, the bearer token is checked before the adapter."""
    return []

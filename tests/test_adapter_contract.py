"""The adapter contract, run over every registered adapter."""

from __future__ import annotations

import inspect
import socket
from typing import Any
from urllib.parse import urlencode

import pytest

from channels.base import ChannelAdapter, Health, InboundRequest, ParseError
from channels.registry import ADAPTERS, adapter_class, adapter_for_channel
from channels.twilio import TwilioAdapter
from channels.twilio.config import TwilioSettings
from schemas import Interaction
from tests import twilio_support as twilio

#: For each adapter: a request it must accept, and one it must refuse to parse.
VALID: dict[str, InboundRequest] = {
    "api": InboundRequest(
        method="POST",
        url="http://hub/v1/interactions",
        headers={"Content-Type": "application/json"},
        body=b'{"identities": [{"type": "email", "value": "A@Example.com"}],'
        b' "text": "hi", "provider_message_id": "c-1"}',
    ),
    "twilio": InboundRequest(
        method="POST",
        url="http://hub/channels/twilio/sms",
        headers={
            "Content-Type": twilio.FORM,
            "X-Twilio-Signature": twilio.sign("sms", twilio.sample_form("inbound_sms.form.txt")),
        },
        body=urlencode(twilio.sample_form("inbound_sms.form.txt")).encode(),
    ),
}
INVALID: dict[str, InboundRequest] = {
    "api": InboundRequest(
        method="POST",
        url="http://hub/v1/interactions",
        headers={"content-type": "application/json"},
        body=b'{"text": 1}',
    ),
    "twilio": InboundRequest(
        method="POST",
        url="http://hub/channels/twilio/sms",
        headers={"content-type": twilio.FORM},
        body=b"Body=no+sender&MessageSid=SM00000000000000000000000000000000",
    ),
}
#: Adapters that need settings to verify VALID (the default comes from the environment).
CONFIGURED: dict[str, Any] = {
    "twilio": lambda: TwilioAdapter(
        TwilioSettings(TWILIO_AUTH_TOKEN=twilio.TOKEN, OMNIHUB_PUBLIC_URL=twilio.PUBLIC_URL)
    ),
}

adapters = pytest.mark.parametrize("name", sorted(ADAPTERS))


def test_every_adapter_has_contract_fixtures() -> None:
    assert set(VALID) == set(ADAPTERS) == set(INVALID)


@adapters
def test_adapter_implements_the_contract(name: str) -> None:
    cls = adapter_class(name)
    assert issubclass(cls, ChannelAdapter)
    assert not inspect.isabstract(cls)
    assert cls.name == name
    assert cls.channels
    for channel in cls.channels:
        assert adapter_for_channel(channel) is cls
    assert inspect.iscoroutinefunction(cls.send)
    assert inspect.iscoroutinefunction(cls.health)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket use fails: parse must be pure."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parse opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@adapters
def test_parse_is_pure_and_deterministic(name: str, no_network: None) -> None:
    adapter = CONFIGURED.get(name, adapter_class(name))()
    adapter.verify(VALID[name])
    first = adapter.parse(VALID[name])
    second = adapter.parse(VALID[name])
    assert first and all(isinstance(i, Interaction) for i in first)
    assert [i.event_id for i in first] == [i.event_id for i in second]
    assert all(i.source == f"channels/{name}" for i in first)


@adapters
def test_parse_refuses_bad_input_with_parse_error(name: str) -> None:
    adapter = adapter_class(name)()
    with pytest.raises(ParseError) as caught:
        adapter.parse(INVALID[name])
    assert str(caught.value)


@adapters
async def test_health_reports(name: str) -> None:
    health = await adapter_class(name)().health()
    assert isinstance(health, Health)
    assert isinstance(health.ok, bool)
    if not health.ok:
        assert health.detail


def test_unknown_adapter_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: api"):
        adapter_class("carrier-pigeon")

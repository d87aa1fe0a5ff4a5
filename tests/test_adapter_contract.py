"""The channel contract, run over every registered adapter.

Each channel provides its own fixtures in ``tests/channels/<name>/contract.py``: ``adapter()``
and, for a webhook adapter, ``accepted()``, ``unparseable()`` and ``forged()``, each a list of
``(route, request)``. Nothing here names a channel: a new channel's folder is enough.
"""

from __future__ import annotations

import importlib
import inspect
import socket
from types import ModuleType
from typing import Any

import pytest
from pydantic_settings import BaseSettings

from channels import registry
from channels.base import (
    Audience,
    ChannelAdapter,
    Health,
    Manifest,
    ParseError,
    SessionAdapter,
    SignatureError,
    SourceAdapter,
    WebhookAdapter,
)
from schemas import DeliveryStatus, Interaction
from services.api.scopes import Scope

NAMES = sorted(registry.manifests())
every_channel = pytest.mark.parametrize("name", NAMES)


def fixtures(name: str) -> ModuleType:
    """The channel's own contract fixtures."""
    try:
        return importlib.import_module(f"tests.channels.{name}.contract")
    except ModuleNotFoundError as exc:
        raise AssertionError(
            f"channel {name} provides no tests/channels/{name}/contract.py"
        ) from exc


def webhook(name: str) -> WebhookAdapter:
    adapter = fixtures(name).adapter()
    if not isinstance(adapter, WebhookAdapter):
        pytest.skip(f"{name} is not a webhook adapter")
    return adapter


def test_the_registry_finds_the_installed_channels() -> None:
    assert {"api", "twilio"} <= set(NAMES)
    assert all(isinstance(m, Manifest) for m in registry.manifests().values())


@every_channel
def test_manifest_and_adapter_agree(name: str) -> None:
    manifest = registry.manifest(name)
    adapter = fixtures(name).adapter()
    cls = type(adapter)
    assert isinstance(adapter, manifest.adapter)  # type: ignore[arg-type]
    assert issubclass(cls, ChannelAdapter) and not inspect.isabstract(cls)
    assert isinstance(adapter, WebhookAdapter | SourceAdapter | SessionAdapter)
    assert cls.name == manifest.name == name
    assert cls.channels == {info.channel for info in manifest.channels}
    for info in manifest.channels:
        assert info.label and info.icon
        assert registry.for_channel(info.channel) is manifest
        assert registry.label(info.channel.value) == info.label
    assert all(issubclass(s, BaseSettings) for s in manifest.settings)
    assert inspect.iscoroutinefunction(cls.send)
    assert inspect.iscoroutinefunction(cls.health)


@every_channel
def test_routes_are_declared_once_with_limits(name: str) -> None:
    adapter = webhook(name)
    seen = set()
    for route in adapter.routes:
        for method in route.methods:
            key = (method, route.full_path(name))
            assert key not in seen, key
            seen.add(key)
        assert adapter.body_limit(route) > 0
        unknown = set(route.scopes) - {s.value for s in Scope}
        assert not unknown, f"{route.path} needs scopes no token can hold: {unknown}"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any socket use fails: parse must be pure."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("parse opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@every_channel
def test_parse_is_pure_and_deterministic(name: str, no_network: None) -> None:
    adapter = webhook(name)
    cases = fixtures(name).accepted()
    assert cases, f"{name} gives no accepted request"
    for route, request in cases:
        adapter.verify(request, route)
        first = adapter.parse(request, route)
        second = adapter.parse(request, route)
        assert first and all(isinstance(e, Interaction | DeliveryStatus) for e in first)
        receipts = [e for e in first if isinstance(e, DeliveryStatus)]
        again = [e for e in second if isinstance(e, DeliveryStatus)]
        assert [e.partition_key for e in receipts] == [e.partition_key for e in again]
        ids = [e.event_id for e in first if isinstance(e, Interaction)]
        assert ids == [e.event_id for e in second if isinstance(e, Interaction)]
        assert all(e.source == f"channels/{name}" for e in first if isinstance(e, Interaction))
        assert all(e.channel in type(adapter).channels for e in first)


@every_channel
def test_parse_refuses_bad_input_with_parse_error(name: str) -> None:
    adapter = webhook(name)
    cases = fixtures(name).unparseable()
    assert cases, f"{name} gives no unparseable request"
    for route, request in cases:
        adapter.verify(request, route)  # authentic: only parsing fails
        with pytest.raises(ParseError) as caught:
            adapter.parse(request, route)
        assert str(caught.value)


@every_channel
def test_verify_refuses_forged_requests(name: str) -> None:
    adapter = webhook(name)
    cases = fixtures(name).forged()
    provider_routes = [r for r in adapter.routes if r.audience is Audience.PROVIDER]
    if provider_routes:
        assert cases, f"{name} has provider routes but gives no forged request"
    for route, request in cases:
        with pytest.raises(SignatureError):
            adapter.verify(request, route)


@every_channel
async def test_health_reports(name: str) -> None:
    health = await fixtures(name).adapter().health()
    assert isinstance(health, Health)
    assert isinstance(health.ok, bool)
    if not health.ok:
        assert health.detail


def test_unknown_adapter_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="known: api"):
        registry.manifest("carrier-pigeon")

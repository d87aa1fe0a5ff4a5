"""The Meta adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

from channels.base import InboundRequest, Route, WebhookAdapter
from channels.meta import MetaAdapter
from channels.meta.config import MetaSettings
from tests.channels.meta import support as meta

SAMPLES = (
    "messenger_text_message.json",
    "messenger_delivery.json",
    "instagram_message.json",
    "whatsapp_inbound_text.json",
    "whatsapp_status_sent.json",
    "whatsapp_status_failed.json",
)


def adapter() -> WebhookAdapter:
    """The adapter with the app secret the samples were signed with."""
    return MetaAdapter(
        MetaSettings(META_APP_SECRET=meta.APP_SECRET, META_VERIFY_TOKEN=meta.VERIFY_TOKEN)  # type: ignore[call-arg]
    )


def _post() -> Route:
    return next(r for r in MetaAdapter.routes if "POST" in r.methods)


def _request(body: bytes, signature: str | None = None) -> InboundRequest:
    signature = meta.sign(body) if signature is None else signature
    return InboundRequest(
        method="POST",
        url="https://hub.example.com/channels/meta/webhook",
        headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature},
        body=body,
    )


def accepted() -> list[tuple[Route, InboundRequest]]:
    """Every sample, with the signature signatures.json gives for it."""
    return [(_post(), _request(meta.sample(name), meta.sample_signature(name))) for name in SAMPLES]


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Signed, but no Meta webhook (or nothing in it that can be an event)."""
    return [
        (_post(), _request(b"not json")),
        (_post(), _request(b'{"object": "page"}')),
        (_post(), _request(b'{"object": "user", "entry": []}')),
        (_post(), _request(meta.messenger({"sender": {"id": "1"}, "recipient": {"id": "2"}}))),
    ]


def forged() -> list[tuple[Route, InboundRequest]]:
    """No signature, a signature of another body, one made with another secret, a bad GET."""
    body = meta.sample("messenger_text_message.json")
    get = next(r for r in MetaAdapter.routes if "GET" in r.methods)
    wrong_token = InboundRequest(
        method="GET",
        url="https://hub.example.com/channels/meta/webhook",
        headers={},
        query={"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
    )
    return [
        (_post(), _request(body, signature="")),
        (_post(), _request(body.replace(b"hello", b"HELLO"), meta.sign(body))),
        (_post(), _request(body, meta.sign(body, "another_secret_000000000000000"))),
        (get, wrong_token),
    ]

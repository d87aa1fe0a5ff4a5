"""The X adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

import json
from typing import Any

from channels.base import InboundRequest, Route, WebhookAdapter
from channels.x import XAdapter
from channels.x.config import XSettings
from tests.channels.x import support as x

CRC, EVENTS = XAdapter.routes


def adapter() -> WebhookAdapter:
    """The adapter switched on, with the samples' consumer secret and the tests' tokens (an
    API nobody listens on: health asks nothing of it)."""
    env = dict(x.x_env(9), X_HEALTH_CHECK_SECONDS="0")
    return XAdapter(XSettings(**env))  # type: ignore[arg-type]


def _request(body: dict[str, Any] | bytes, signature: str | None = "") -> InboundRequest:
    content, good = x.signed(body)
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers[x.HEADER] = signature or good
    return InboundRequest(
        method="POST", url=f"https://hub.example.com{x.WEBHOOK}", headers=headers, body=content
    )


def accepted() -> list[tuple[Route, InboundRequest]]:
    """The DM sample as it is with its signature from signatures.json, the account's own DM
    from X's app, a quick reply, a photo, a read receipt."""
    verbatim = InboundRequest(
        method="POST",
        url=x.WEBHOOK,
        headers={"content-type": "application/json", x.HEADER: x.sample_signature()},
        body=x.sample_bytes("aaa_direct_message_events.json"),
    )
    return [
        (EVENTS, verbatim),
        (EVENTS, _request(x.dm(text="Sent from my phone", own=True))),
        (EVENTS, _request(x.dm(text="Yes, please", quick_reply="confirm"))),
        (EVENTS, _request(x.dm(text="see https://t.co/abcDEF123", media=x.photo(_ton())))),
        (EVENTS, _request(x.read_event(x.CUSTOMER, x.new_id()))),
    ]


def _ton() -> str:
    return "https://ton.twitter.com/1.1/ton/data/dm/1/2/Tm-k6QVR.jpg"


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Signed, but not X's payload, another account's, or only events the hub does not use."""
    other = dict(x.dm(), for_user_id="999")
    tweet = {"for_user_id": x.ACCOUNT, "tweet_create_events": [{"id_str": "1"}]}
    unknown_dm = x.dm()
    unknown_dm["direct_message_events"][0]["type"] = "message_delete"
    return [
        (EVENTS, _request(b"{not json")),
        (EVENTS, _request(json.dumps(["not", "an", "object"]).encode())),
        (EVENTS, _request({"direct_message_events": []})),
        (EVENTS, _request(other)),
        (EVENTS, _request(tweet)),
        (EVENTS, _request(unknown_dm)),
    ]


def forged() -> list[tuple[Route, InboundRequest]]:
    """No signature, one with another secret, the sample's signature over other bytes."""
    body = x.sample_bytes("aaa_direct_message_events.json")
    _, other = x.signed(body, secret="not-the-consumer-secret")
    return [
        (EVENTS, _request(body, signature=None)),
        (EVENTS, _request(body, signature=other)),
        (EVENTS, _request(body + b" ", signature=x.sample_signature())),
        (
            CRC,
            InboundRequest(method="GET", url=x.WEBHOOK, headers={}, query={}),
        ),
    ]

"""The Telegram adapter's fixtures for the contract suite (tests/test_adapter_contract.py)."""

from __future__ import annotations

import json
from typing import Any

from channels.base import InboundRequest, Route, WebhookAdapter
from channels.telegram import TelegramAdapter
from channels.telegram.config import TelegramSettings
from tests.channels.telegram import support as tg

ROUTE = TelegramAdapter.routes[0]


def adapter() -> WebhookAdapter:
    """The adapter with the samples' secret token and the tests' bot token."""
    return TelegramAdapter(
        TelegramSettings(TELEGRAM_BOT_TOKEN=tg.TOKEN, TELEGRAM_WEBHOOK_SECRET=tg.SECRET)  # type: ignore[call-arg]
    )


def _request(body: dict[str, Any] | bytes, secret: str | None = tg.SECRET) -> InboundRequest:
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[tg.HEADER] = secret
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return InboundRequest(
        method="POST", url=f"https://hub.example.com{tg.WEBHOOK}", headers=headers, body=content
    )


def accepted() -> list[tuple[Route, InboundRequest]]:
    """The samples as they are (the .http one with its own headers), an edit, a button."""
    headers, body = tg.sample_http()
    text = InboundRequest(method="POST", url=tg.WEBHOOK, headers=headers, body=body)
    photo = tg.sample("update_reply_with_photo.json")
    return [
        (ROUTE, text),
        (ROUTE, _request(photo)),
        (ROUTE, _request(tg.edited(photo, "Hier ist das richtige Foto", 1441645700))),
        (ROUTE, _request(tg.callback(1111111, "rating:5"))),
    ]


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Signed, but no update, or one that can be no event (a group message, ignored)."""
    return [
        (ROUTE, _request(b"{not json")),
        (ROUTE, _request({"update_id": 10002, "message": {"text": "no chat"}})),
        (ROUTE, _request(tg.in_group(1111111, "hello group"))),
        (ROUTE, _request({"update_id": 10003, "poll": {"id": "1", "question": "?"}})),
    ]


def forged() -> list[tuple[Route, InboundRequest]]:
    """No secret token, another one, the right one in another case."""
    body = tg.sample("update_text_message.http")
    return [
        (ROUTE, _request(body, secret=None)),
        (ROUTE, _request(body, secret="hub_tg_secret_0123456789-abc_XYZ")),
        (ROUTE, _request(body, secret=tg.SECRET.lower())),
    ]

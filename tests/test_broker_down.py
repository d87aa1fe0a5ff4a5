"""A broker that does not acknowledge means 503, never a 2xx for an event not published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from services.api.app import create_app
from services.api.auth import Role
from services.bus.admin import ensure_topics
from services.config import Settings
from services.stack.broker import EmbeddedBroker
from tests.support import unique


@pytest.fixture
async def app_with_own_broker(stack: Any, tmp_path: Path) -> Any:
    """The real app in-process, on a broker this test may stop."""
    broker = EmbeddedBroker(tmp_path)
    broker.start()
    await ensure_topics(broker.bootstrap)
    settings = Settings(OMNIHUB_DATA_DIR=tmp_path, OMNIHUB_PUBLISH_TIMEOUT=2.0)
    app = create_app(settings, broker.bootstrap, stack.database_url)
    async with app.router.lifespan_context(app):
        yield app, broker
    broker.stop()


async def test_post_answers_503_when_the_broker_is_gone(
    app_with_own_broker: Any, tokens: dict[Role, str]
) -> None:
    app, broker = app_with_own_broker
    transport = httpx.ASGITransport(app=app)
    headers = {"authorization": f"Bearer {tokens[Role.INTEGRATION]}"}
    payload = {
        "identities": [{"type": "email", "value": "down@example.com"}],
        "text": "hello",
        "provider_message_id": unique("down"),
    }
    async with httpx.AsyncClient(
        transport=transport, base_url="http://hub", headers=headers
    ) as http:
        assert (await http.post("/v1/interactions", json=payload)).status_code == 202
        broker.stop()
        response = await http.post(
            "/v1/interactions", json=dict(payload, provider_message_id=unique("down"))
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["kafka"] != "ok"

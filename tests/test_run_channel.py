"""`omnihub run channel twilio`: one adapter's webhooks alone, needing only Kafka."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from schemas.cloudevents import header_map
from schemas.ids import event_id_for
from schemas.topics import INTERACTIONS
from services.stack.ports import free_port, wait_for_port
from tests.channels.twilio.support import new_phone, post_webhook, sms
from tests.support import consume, start_component, stop_process


@pytest.fixture
def channel_url(stack: Any, twilio_env: dict[str, str], tmp_path: Path) -> Any:
    """The Twilio adapter served alone, with no DATABASE_URL at all."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        twilio_env,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        OMNIHUB_DATA_DIR=str(tmp_path),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_LOG_LEVEL="WARNING",
    )
    proc = start_component("channel twilio", env, tmp_path / "channel.log")
    wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


async def test_the_twilio_adapter_serves_alone(channel_url: str, stack: Any) -> None:
    async with httpx.AsyncClient(base_url=channel_url, timeout=30) as http:
        ready = (await http.get("/readyz")).json()
        assert ready["ready"] is True and "database" not in ready["checks"]
        assert set(k for k in ready["checks"] if k.startswith("channel:")) == {"channel:twilio"}
        assert (await http.post("/v1/interactions", json={})).status_code == 404
        params = sms(new_phone(), "Is my order shipped?")
        accepted = await post_webhook(http, "sms", params)
        assert accepted.status_code == 200, accepted.text
        forged = await post_webhook(http, "sms", sms(new_phone()), signature="bm90IGl0")
        assert forged.status_code == 403
    event_id = str(event_id_for("sms", params["MessageSid"]))
    await consume(
        stack.bootstrap,
        INTERACTIONS.name,
        lambda rs: any(header_map(r.headers).get("ce_id") == event_id for r in rs),
    )

"""`omnihub run channel twilio`: one adapter's webhooks alone, needing only Kafka."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from schemas.cloudevents import header_map
from schemas.ids import event_id_for
from schemas.sealing import SCHEME_HEADER
from schemas.topics import INTERACTIONS
from services.stack.ports import free_port, wait_for_port
from tests.channels.twilio.support import new_phone, post_webhook, sms
from tests.support import (
    announce_period_keys,
    consume,
    eventually,
    opened_values,
    read_all,
    start_component,
    stop_process,
)


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
    # a channel process has no database: it learns the period keys from their topic
    await announce_period_keys(stack.bootstrap, stack.database_url)
    async with httpx.AsyncClient(base_url=channel_url, timeout=30) as http:

        async def readiness() -> dict[str, Any] | None:
            answer = (await http.get("/readyz")).json()
            return answer if answer["ready"] else None

        ready = await eventually(readiness, timeout=20)
        assert ready["checks"]["period_key"] == "ok" and "database" not in ready["checks"]
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
    records = await read_all(stack.bootstrap, INTERACTIONS.name)
    [record] = [r for r in records if header_map(r.headers).get("ce_id") == event_id]
    assert header_map(record.headers)[SCHEME_HEADER] == "period"
    assert params["From"].encode() not in record.key + record.value
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
    try:
        [opened] = await opened_values(pool, [record])
    finally:
        await pool.close()
    assert opened is not None and b"Is my order shipped?" in opened

"""`omnihub run channel meta`: the Messenger, Instagram and WhatsApp webhook served alone,
needing only Kafka (no DATABASE_URL); the processors read what it staged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack.ports import free_port, wait_for_port
from tests.channels.meta import support as meta
from tests.support import announce_period_keys, eventually, start_component, stop_process, unique

pytestmark = pytest.mark.usefixtures("processors", "meta_graph")


@pytest.fixture
def channel_url(stack: Any, meta_graph_port: int, tmp_path: Path) -> Iterator[str]:
    """The Meta adapter served alone, with no DATABASE_URL at all."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        meta.meta_env(meta_graph_port),
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        OMNIHUB_DATA_DIR=str(tmp_path),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_LOG_LEVEL="WARNING",
    )
    proc = start_component("channel meta", env, tmp_path / "channel.log")
    wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


async def test_the_meta_adapter_serves_alone(
    channel_url: str, stack: Any, client: httpx.AsyncClient
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    user, mid = meta.new_id(), unique("mid")
    body = meta.messenger(meta.text_item(user, mid, "written to Meta's own process"))
    async with httpx.AsyncClient(base_url=channel_url, timeout=30) as http:

        async def readiness() -> dict[str, Any] | None:
            answer = (await http.get("/readyz")).json()
            return answer if answer["ready"] else None

        ready = await eventually(readiness, timeout=20)
        assert {k for k in ready["checks"] if k.startswith("channel:")} == {"channel:meta"}
        challenge = await http.get(
            "/channels/meta/webhook",
            params={
                "hub.mode": "subscribe",
                "hub.verify_token": meta.meta_env(0)["META_VERIFY_TOKEN"],
                "hub.challenge": "1158201444",
            },
        )
        assert (challenge.status_code, challenge.text) == (200, "1158201444")
        assert (await meta.post_webhook(http, body, signature="sha256=00")).status_code == 403
        accepted = await meta.post_webhook(http, body)
        assert accepted.status_code == 200, accepted.text
    customer = await meta.customer_of(client, f"facebook:{meta.PAGE_ID}:{user}")

    async def written() -> list[Any]:
        return await meta.items(client, customer["id"])

    [entry] = await eventually(written, timeout=30)
    assert entry["text"] == "written to Meta's own process"

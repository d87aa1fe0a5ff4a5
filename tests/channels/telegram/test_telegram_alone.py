"""`omnihub run channel telegram`: the bot's webhook served alone, needing only Kafka; the
processors read what it staged."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack.ports import free_port, wait_for_port
from tests.channels.telegram import support as tg
from tests.support import announce_period_keys, eventually, start_component, stop_process

pytestmark = pytest.mark.usefixtures("processors", "telegram_api")


@pytest.fixture
def channel_url(stack: Any, telegram_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """The Telegram adapter served alone, with no DATABASE_URL at all."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        telegram_env,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        OMNIHUB_DATA_DIR=str(tmp_path),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_LOG_LEVEL="WARNING",
    )
    proc = start_component("channel telegram", env, tmp_path / "channel.log")
    wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


async def test_the_telegram_adapter_serves_alone(
    channel_url: str, stack: Any, client: httpx.AsyncClient
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    async with httpx.AsyncClient(base_url=channel_url, timeout=30) as http:

        async def readiness() -> dict[str, Any] | None:
            answer = (await http.get("/readyz")).json()
            return answer if answer["ready"] else None

        ready = await eventually(readiness, timeout=20)
        assert {k for k in ready["checks"] if k.startswith("channel:")} == {"channel:telegram"}
        body = tg.update(text="written to the bot's own process")
        assert (await tg.post_update(http, body, secret="wrong")).status_code == 403
        accepted = await tg.post_update(http, body)
        assert accepted.status_code == 200, accepted.text
    customer = await tg.customer_of(client, body["message"]["from"]["id"])

    async def written() -> list[Any]:
        return await tg.items(client, customer["id"])

    [entry] = await eventually(written)
    assert entry["text"] == "written to the bot's own process"

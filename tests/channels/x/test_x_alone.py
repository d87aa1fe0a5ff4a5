"""`omnihub run channel x`: the webhook served alone, needing only Kafka (the processors read
what it staged); switched off, the same process serves nothing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack.ports import free_port, wait_for_port
from tests.channels.x import support as x
from tests.support import announce_period_keys, eventually, start_component, stop_process

pytestmark = pytest.mark.usefixtures("processors", "x_api")


@pytest.fixture
def run_alone(stack: Any, x_api_port: int, tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Start the X adapter alone, with no DATABASE_URL at all; its URL."""
    started: list[Any] = []

    def run(**changes: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(
            x.x_env(x_api_port),
            KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
            OMNIHUB_DATA_DIR=str(tmp_path),
            OMNIHUB_HTTP_PORT=str(port),
            OMNIHUB_LOG_LEVEL="WARNING",
            **changes,
        )
        log = tmp_path / f"channel-{len(started)}.log"
        proc = start_component("channel x", env, log)
        started.append(proc)
        wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
        return f"http://127.0.0.1:{port}"

    yield run
    for proc in started:
        stop_process(proc)


async def ready(http: httpx.AsyncClient) -> dict[str, Any]:
    async def readiness() -> dict[str, Any] | None:
        answer = (await http.get("/readyz")).json()
        return answer if answer["ready"] else None

    return dict(await eventually(readiness, timeout=20))


async def test_the_x_adapter_serves_alone(
    run_alone: Callable[..., str], stack: Any, client: httpx.AsyncClient
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    async with httpx.AsyncClient(base_url=run_alone(), timeout=30) as http:
        checks = (await ready(http))["checks"]
        assert {k: v for k, v in checks.items() if k.startswith("channel:")} == {"channel:x": "ok"}
        crc = await http.get(x.WEBHOOK, params={"crc_token": "abc"})
        assert crc.status_code == 200 and crc.json()["response_token"].startswith("sha256=")
        user = x.new_user()
        body = x.dm(user, "written to the X channel's own process")
        _, wrong = x.signed(body, secret="wrong")
        assert (await x.post_event(http, body, wrong)).status_code == 403
        accepted = await x.post_event(http, body)
        assert accepted.status_code == 200, accepted.text
    customer = await x.customer_of(client, user)

    async def written() -> list[Any]:
        return await x.items(client, customer["id"])

    [entry] = await eventually(written)
    assert entry["text"] == "written to the X channel's own process"


async def test_switched_off_it_serves_nothing(
    run_alone: Callable[..., str], stack: Any, client: httpx.AsyncClient
) -> None:
    await announce_period_keys(stack.bootstrap, stack.database_url)
    async with httpx.AsyncClient(base_url=run_alone(X_ENABLED="false"), timeout=30) as http:
        checks = (await ready(http))["checks"]
        assert checks["channel:x"] == "ok"  # off on purpose: nothing to repair
        assert (await http.get(x.WEBHOOK, params={"crc_token": "abc"})).status_code == 403
        user = x.new_user()
        assert (await x.post_event(http, x.dm(user))).status_code == 403
    query = {"identity": f"x:{x.ACCOUNT}:{user}"}
    assert (await client.get("/v1/customers", params=query)).json()["customers"] == []

"""Two `omnihub run channel webchat` processes behind no shared memory: a reply reaches the
visitor whichever process holds the visitor's socket, and the visitor resumes on the other one
after that one is gone."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.stack.ports import free_port, wait_for_port
from tests.channels.webchat.support import Widget
from tests.support import eventually, start_component, stop_process

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


@pytest.fixture
def two(component_env: dict[str, str], tmp_path: Path) -> Iterator[list[str]]:
    """Two web chat processes, each on its own port; their socket URLs."""
    procs, urls = [], []
    try:
        for n in range(2):
            port = free_port()
            env = dict(component_env, OMNIHUB_HTTP_PORT=str(port))
            proc = start_component("channel webchat", env, tmp_path / f"webchat-{n}.log")
            procs.append(proc)
            wait_for_port("127.0.0.1", port, 60, alive=lambda p=proc: p.poll() is None)
            urls.append(f"ws://127.0.0.1:{port}/channels/webchat/ws")
        yield urls
    finally:
        for proc in procs:
            stop_process(proc)


async def ready(url: str) -> bool:
    """The process answers /readyz (its relay reads the sessions topic from then on)."""
    async with httpx.AsyncClient(timeout=5) as http:
        health = url.replace("ws://", "http://").replace("/channels/webchat/ws", "/readyz")
        return (await http.get(health)).status_code == 200


async def test_a_reply_reaches_the_process_holding_the_socket(
    two: list[str], pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    first, second = two
    for url in two:
        await eventually(lambda url=url: ready(url), timeout=60)
    widget, welcome = await Widget.open(second)
    try:
        assert (await widget.say("hi", "Is anyone there?"))["seq"] == 1
        site, hexed, _ = welcome["visitor"].split(".")
        conversation = f"{site}:{uuid.UUID(hexed)}"
        customer = await eventually(
            lambda: pool.fetchval(
                "SELECT customer_id FROM timeline WHERE provider_message_id = $1",
                f"{conversation}/hi",
            ),
            timeout=60,
        )
        answer = await client.post(
            f"/v1/customers/{customer}/messages", json={"channel": "webchat", "text": "Yes!"}
        )
        assert answer.status_code == 202, answer.text
        live: dict[str, Any] = await widget.receive()
        assert (live["seq"], live["entry"]["text"]) == (2, "Yes!")
    finally:
        await widget.close()
    # the visitor comes back through the other process: same conversation, nothing missed
    widget, again = await Widget.open(first, visitor=welcome["visitor"], after=1)
    try:
        assert again["visitor"] == welcome["visitor"]
        replayed = await widget.receive()
        assert (replayed["seq"], replayed["entry"]["text"]) == (2, "Yes!")
    finally:
        await widget.close()

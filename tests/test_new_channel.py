"""A new channel is a folder and an entry point: nothing in services/ or in these tests names
it. The demo channel (tests/data/demo_channel, a distribution with an ``omnihub.channels``
entry point) is put on the path, and the hub serves each of its shapes for real: a webhook
with a GET handshake, client sessions that replies reach through the bus, and a poller."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import httpx
import pytest
import uvicorn

from channels import registry
from channels.base import Manifest
from channels.base.signing import SIGNATURE_HEADER, sign
from schemas import Channel, Identity, IdentityType, OutboundCommand
from schemas.cloudevents import header_map
from schemas.ids import event_id_for
from schemas.sealing import SCHEME_HEADER
from schemas.topics import DELIVERY, INTERACTIONS, SESSIONS
from services.adapters import build_adapters
from services.api.app import create_app
from services.bus.producer import Producer
from services.config import Settings
from services.customers.outbound import default_recipient
from services.stack.ports import free_port
from tests.support import announce_period_keys, consume, eventually, sealing_publisher, unique

DEMO = Path(__file__).parent / "data" / "demo_channel"


@pytest.fixture
def demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Manifest]:
    """The demo channel installed, on a channel no installed adapter serves."""
    served = {i.channel for m in registry.manifests().values() for i in m.channels}
    free = next(c for c in Channel if c not in served and c is not Channel.MANUAL)
    monkeypatch.setenv("OMNIHUB_DEMO_CHANNEL", free.value)
    monkeypatch.syspath_prepend(str(DEMO))
    registry.manifests.cache_clear()
    sys.modules.pop("omnihub_demo", None)
    yield registry.manifest("demo")
    registry.manifests.cache_clear()
    sys.modules.pop("omnihub_demo", None)


def test_the_registry_and_the_hub_know_the_new_channel(demo: Manifest) -> None:
    [info] = demo.channels
    assert registry.for_channel(info.channel) is demo
    assert registry.label(info.channel.value) == "Demo"
    assert "demo" in build_adapters([])
    assert list(build_adapters(["demo"], hub_api=False)) == ["demo"]
    visitor = {"type": "user_id", "scope": "demo", "value": "v1"}
    other = {"type": "email", "scope": "", "value": "a@example.com"}
    recipient = default_recipient(info.channel, [other, visitor])
    assert recipient is not None and recipient.value == "v1"


@pytest.fixture
async def served(demo: Manifest, stack: Any, tmp_path: Path) -> AsyncIterator[Any]:
    """`omnihub run channel demo` in-process: the demo adapter alone, on a real port."""
    settings = Settings(OMNIHUB_DATA_DIR=tmp_path, OMNIHUB_CHANNELS="demo")
    await announce_period_keys(stack.bootstrap, stack.database_url)  # as the hub's processes do
    app = create_app(settings, stack.bootstrap, stack.database_url, channels=["demo"], core=False)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: asyncio.sleep(0, server.started), timeout=20)
    yield app, f"127.0.0.1:{port}"
    server.should_exit = True
    await task


async def has_event(stack: Any, topic: str, ce_id: str) -> None:
    await consume(
        stack.bootstrap, topic, lambda rs: any(header_map(r.headers)["ce_id"] == ce_id for r in rs)
    )


async def test_its_webhook_is_served_verified_and_published(served: Any, stack: Any) -> None:
    _, host = served
    async with httpx.AsyncClient(base_url=f"http://{host}", timeout=20) as http:
        handshake = await http.get("/channels/demo/hook?token=demo-secret&challenge=c-42")
        assert (handshake.status_code, handshake.text) == (200, "c-42")
        assert (await http.get("/channels/demo/hook?token=wrong")).status_code == 403
        provider_id = unique("hook")
        body = json.dumps({"visitor": "v1", "text": "hello", "id": provider_id}).encode()
        headers = {SIGNATURE_HEADER: sign("demo-secret", body)}
        answer = await http.post("/channels/demo/hook", content=body, headers=headers)
        assert (answer.status_code, answer.text) == (200, "thanks")
        forged = await http.post("/channels/demo/hook", content=body, headers={})
        assert forged.status_code == 403
        big = await http.post("/channels/demo/hook", content=b"x" * 5000, headers=headers)
        assert big.status_code == 413  # the route's own limit, before anything is read
        assert (await http.put("/channels/demo/hook", content=body)).status_code == 405
        assert (await http.post("/v1/interactions", json={})).status_code == 404
    [info] = registry.manifest("demo").channels
    await has_event(stack, INTERACTIONS.name, str(event_id_for(info.channel.value, provider_id)))


async def test_replies_reach_the_process_holding_the_session(served: Any, stack: Any) -> None:
    _, host = served
    visitor = unique("visitor")
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"ws://{host}/channels/demo/ws?visitor={visitor}") as ws,
    ):
        assert (await ws.receive_str(timeout=10)) == "held"
        await ws.send_str("hi")
        assert (await ws.receive_str(timeout=10)) == "ack"  # after the broker acknowledged
        # the dispatcher's side: another instance of the adapter, in another process
        sender = registry.manifest("demo").adapter()
        producer = Producer(stack.bootstrap, client_id="test-dispatcher")
        await producer.start()
        keys = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=1)
        try:
            sender.attach(await sealing_publisher(producer, keys))
            [info] = registry.manifest("demo").channels
            command = OutboundCommand(
                customer_id=uuid.uuid4(),
                channel=info.channel,
                to=Identity(type=IdentityType.USER_ID, scope="demo", value=visitor),
                text="we are on it",
                requested_by="agent:test",
            )
            result = await sender.send(command)
        finally:
            await producer.stop()
            await keys.close()
        assert result.provider_message_id == f"relay:{command.command_id}"
        assert (await ws.receive_str(timeout=20)) == "reply:we are on it"
    # relayed sealed with the customer's key: the sessions topic holds nothing readable
    relayed = await consume(
        stack.bootstrap,
        SESSIONS.name,
        lambda rs: any(header_map(r.headers)["ce_id"] == str(command.command_id) for r in rs),
    )
    [record] = [r for r in relayed if header_map(r.headers)["ce_id"] == str(command.command_id)]
    assert header_map(record.headers)[SCHEME_HEADER] == "customer"
    assert b"we are on it" not in record.value and visitor.encode() not in record.value
    await consume(
        stack.bootstrap,
        DELIVERY.name,
        lambda rs: any(
            json.loads(r.value)["command_id"] == str(command.command_id)
            and json.loads(r.value)["state"] == "delivered"
            for r in rs
        ),
    )


async def test_its_poller_is_started_restarted_and_stopped(served: Any, stack: Any) -> None:
    app, _ = served
    adapter = app.state.adapters["demo"]
    supervisor = app.state.sources
    first, second = unique("one"), unique("two")
    type(adapter).inbox.extend([first, "boom"])
    await eventually(lambda: asyncio.sleep(0, supervisor.restarts["demo"] >= 1), timeout=20)
    type(adapter).inbox.append(second)
    [info] = registry.manifest("demo").channels
    for text in (first, second):
        await has_event(
            stack, INTERACTIONS.name, str(event_id_for(info.channel.value, f"poll-{text}"))
        )

"""Replies: API -> outbound topic -> dispatcher -> signed callback -> delivery state on timeline."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web

from channels.base import ChannelAdapter, Health, SendResult
from channels.base.signing import SIGNATURE_HEADER, verify
from schemas import Channel, DeliveryState, Identity, OutboundCommand
from schemas.cloudevents import header_map
from schemas.sealing import SEALED_CONTENT_TYPE
from schemas.topics import OUTBOUND
from services.config import Settings
from services.dispatcher.app import APP_ID
from services.dispatcher.send import MAYBE_TWICE, dispatch, dispatch_all
from services.worker.app import ready_file
from tests.support import (
    CALLBACK_SECRET,
    consume,
    dispatcher_env,
    eventually,
    opened_values,
    start_component,
    stop_process,
    unique,
)

SECRET = CALLBACK_SECRET


class CallbackServer:
    """A real HTTP server on loopback standing in for an integration's reply endpoint."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()
        self.bad_signatures = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get(SIGNATURE_HEADER)):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        command = json.loads(body)
        self.attempts[command["command_id"]] += 1
        if "REJECT" in command["text"]:
            return web.Response(status=400, text="unknown recipient")
        if "FLAKY" in command["text"] and self.attempts[command["command_id"]] < 3:
            return web.Response(status=503, text="try later")
        self.received.append(command)
        return web.Response(status=200, headers={"X-Message-Id": f"ext-{command['command_id']}"})


@pytest.fixture(scope="session")
async def callback(callback_port: int) -> AsyncIterator[CallbackServer]:
    """The callback server, listening where the dispatcher fixture sends replies."""
    server = CallbackServer()
    app = web.Application()
    app.router.add_post("/replies", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", callback_port)
    await site.start()
    yield server
    await runner.cleanup()


pytestmark = pytest.mark.usefixtures("processors", "dispatcher")


async def new_customer(client: httpx.AsyncClient) -> tuple[str, str]:
    """Post an inbound interaction for a new customer; return (customer id, event id)."""
    email = f"{unique('reply')}@example.com"
    response = await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": email}],
            "text": "Can you call me back?",
            "provider_message_id": unique("in"),
        },
    )
    event_id = response.json()["event_id"]

    async def find() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{email}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    return await eventually(find), event_id


async def outbound_item(
    client: httpx.AsyncClient, customer_id: str, command_id: str, state: str
) -> dict[str, Any] | None:
    """The timeline entry of ``command_id`` once its delivery state is ``state``."""
    page = (await client.get(f"/v1/customers/{customer_id}/timeline")).json()
    for item in page["items"]:
        if item.get("command_id") == command_id and item["delivery"]["state"] == state:
            return item
    return None


async def test_reply_is_sent_signed_and_its_state_reaches_the_timeline(
    client: httpx.AsyncClient, callback: CallbackServer
) -> None:
    customer_id, inbound_id = await new_customer(client)
    response = await client.post(
        f"/v1/customers/{customer_id}/messages",
        json={"channel": "api", "text": "We will call you at 3 pm.", "in_reply_to": inbound_id},
    )
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]

    item = await eventually(
        lambda: outbound_item(client, customer_id, command_id, "sent"), timeout=30
    )
    assert item["direction"] == "outbound"
    assert item["text"] == "We will call you at 3 pm."
    [sent] = [c for c in callback.received if c["command_id"] == command_id]
    assert sent["customer_id"] == customer_id
    assert sent["in_reply_to"] == inbound_id
    assert callback.bad_signatures == 0


async def test_transient_callback_errors_are_retried_with_backoff(
    client: httpx.AsyncClient, callback: CallbackServer
) -> None:
    customer_id, _ = await new_customer(client)
    response = await client.post(
        f"/v1/customers/{customer_id}/messages",
        json={"channel": "api", "text": "FLAKY network today"},
    )
    command_id = response.json()["command_id"]
    await eventually(lambda: outbound_item(client, customer_id, command_id, "sent"), timeout=30)
    assert callback.attempts[command_id] == 3
    assert [c["command_id"] for c in callback.received].count(command_id) == 1


async def test_refused_reply_shows_failed_with_the_reason(
    client: httpx.AsyncClient, callback: CallbackServer
) -> None:
    customer_id, _ = await new_customer(client)
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "api", "text": "REJECT me"}
    )
    command_id = response.json()["command_id"]
    item = await eventually(
        lambda: outbound_item(client, customer_id, command_id, "failed"), timeout=30
    )
    assert item["delivery"]["error_code"] == "400"
    assert "refused" in item["delivery"]["error"]
    assert callback.attempts[command_id] == 1  # a 4xx is not retried


async def test_channel_without_an_adapter_is_refused_not_lost(
    client: httpx.AsyncClient,
) -> None:
    customer_id, _ = await new_customer(client)
    # every channel with a provider has an adapter now: what agents log by hand has none
    response = await client.post(
        f"/v1/customers/{customer_id}/messages",
        json={
            "channel": "manual",
            "text": "hello",
            "to": {"type": "phone", "value": "+33612345678"},
        },
    )
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]
    item = await eventually(
        lambda: outbound_item(client, customer_id, command_id, "refused"), timeout=30
    )
    assert item["delivery"]["error_code"] == "no_adapter"


async def test_a_reply_holding_nul_is_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    """It could not be stored: 422 before anything is queued, never a 500."""
    response = await client.post(
        "/v1/customers/00000000-0000-0000-0000-000000000001/messages",
        json={"channel": "api", "text": "refund\u0000 issued", "subject": "ok"},
    )
    assert response.status_code == 422, response.text
    assert [e["loc"][-1] for e in response.json()["detail"]] == ["text"]


async def test_reply_to_unknown_customer_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/customers/00000000-0000-0000-0000-000000000001/messages",
        json={"channel": "api", "text": "hi"},
    )
    assert response.status_code == 404


async def test_reply_on_a_channel_without_consent_is_refused_before_sending(
    client: httpx.AsyncClient, callback: CallbackServer
) -> None:
    email = f"{unique('optout')}@example.com"
    await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": email}],
            "text": "Stop writing to me here",
            "provider_message_id": unique("in"),
            "consent": [
                {
                    "channel": "api",
                    "purpose": "service",
                    "granted": False,
                    "reason": "asked by the customer",
                }
            ],
        },
    )

    async def withdrawn() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{email}"})).json()
        if found["customers"] and found["customers"][0]["consents"]:
            return found["customers"][0]
        return None

    customer = await eventually(withdrawn)
    [statement] = customer["consents"]
    assert statement["channel"] == "api"
    assert statement["granted"] is False
    response = await client.post(
        f"/v1/customers/{customer['id']}/messages",
        json={"channel": "api", "text": "Our new offer!"},
    )
    command_id = response.json()["command_id"]
    item = await eventually(
        lambda: outbound_item(client, customer["id"], command_id, "refused"), timeout=30
    )
    assert item["delivery"]["error_code"] == "consent_withdrawn"
    assert callback.attempts[command_id] == 0


async def test_reply_goes_to_an_identity_the_channel_delivers_to(
    client: httpx.AsyncClient,
) -> None:
    from tests.support import phone

    mail, tel = f"{unique('pick')}@example.com", phone()
    await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": mail}, {"type": "phone", "value": tel}],
            "text": "Call or text me",
            "provider_message_id": unique("in"),
        },
    )

    async def find() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{mail}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    customer_id = await eventually(find)
    response = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "sms", "text": "On our way"}
    )
    assert response.status_code == 202, response.text
    command_id = response.json()["command_id"]

    async def sent() -> Any:
        page = (await client.get(f"/v1/customers/{customer_id}/timeline")).json()
        return next((i for i in page["items"] if i.get("command_id") == command_id), None)

    item = await eventually(sent, timeout=30)
    assert item["identities"][0] == {"type": "phone", "scope": "", "value": tel}
    email_only = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "telegram", "text": "hi"}
    )
    assert email_only.status_code == 422


def wait_ready(proc: subprocess.Popen[bytes], data_dir: Path, timeout: float = 60.0) -> None:
    """Wait until the dispatcher ``proc`` joined its group and holds partitions."""
    marker = ready_file(Settings(OMNIHUB_DATA_DIR=str(data_dir)), APP_ID, proc.pid)
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert proc.poll() is None, f"the dispatcher exited ({proc.returncode})"
        assert time.monotonic() < deadline, f"the dispatcher not ready within {timeout}s"
        time.sleep(0.1)


@pytest.fixture
def api_only_dispatcher(
    request: pytest.FixtureRequest,
    dispatcher: subprocess.Popen[bytes],
    component_env: dict[str, str],
    data_dir: Path,
    callback_port: int,
) -> Iterator[subprocess.Popen[bytes]]:
    """The session's dispatcher replaced, for one test, by one started with
    OMNIHUB_CHANNELS=api (in the same consumer group, so it gets every command); one serving
    every adapter, as the session's did, takes over again afterwards."""
    env = dispatcher_env(component_env, callback_port)
    stop_process(dispatcher)
    proc = start_component(
        "dispatcher", dict(env, OMNIHUB_CHANNELS="api"), data_dir / "dispatcher-api-only.log"
    )
    try:
        wait_ready(proc, data_dir)
        yield proc
    finally:
        stop_process(proc)
        again = start_component("dispatcher", env, data_dir / "dispatcher.log")
        request.config.add_cleanup(lambda: stop_process(again))
        wait_ready(again, data_dir)


async def test_a_dispatcher_serving_one_adapter_refuses_commands_for_the_others_channels(
    client: httpx.AsyncClient,
    callback: CallbackServer,
    api_only_dispatcher: subprocess.Popen[bytes],
) -> None:
    from tests.support import phone

    mail, tel = f"{unique('served')}@example.com", phone()
    await client.post(
        "/v1/interactions",
        json={
            "identities": [{"type": "email", "value": mail}, {"type": "phone", "value": tel}],
            "text": "Text me",
            "provider_message_id": unique("in"),
        },
    )

    async def find() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"email:{mail}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    customer_id = await eventually(find)
    sms = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "sms", "text": "On our way"}
    )
    assert sms.status_code == 202, sms.text
    refused = await eventually(
        lambda: outbound_item(client, customer_id, sms.json()["command_id"], "refused"),
        timeout=30,
    )
    assert refused["delivery"]["error_code"] == "no_adapter"
    assert "sms is not served by this dispatcher (OMNIHUB_CHANNELS" in refused["delivery"]["error"]
    # the adapter it serves still sends
    api = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "api", "text": "Or here"}
    )
    await eventually(
        lambda: outbound_item(client, customer_id, api.json()["command_id"], "sent"), timeout=30
    )
    assert api_only_dispatcher.poll() is None


class RecordingAdapter(ChannelAdapter):
    """The API channel's sending edge, recording what it was asked to send."""

    name = "recording"
    channels = frozenset({Channel.API})

    def __init__(self) -> None:
        self.sent: list[OutboundCommand] = []

    async def send(self, command: OutboundCommand) -> SendResult:
        self.sent.append(command)
        return SendResult(provider_message_id=f"rec-{len(self.sent)}")

    async def health(self) -> Health:
        return Health(ok=True)


async def test_a_send_after_an_interrupted_attempt_says_it_may_be_a_repeat(
    client: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    customer_id, _ = await new_customer(client)
    adapter = RecordingAdapter()
    to = Identity(type="email", value=f"{unique('twice')}@example.com")
    fresh = OutboundCommand(customer_id=customer_id, channel=Channel.API, to=to, text="first")
    assert MAYBE_TWICE not in (await dispatch(pool, {"rec": adapter}, fresh)).interaction.attributes
    # a dispatcher claimed this command, then died before recording how the send ended
    interrupted = OutboundCommand(customer_id=customer_id, channel=Channel.API, to=to, text="x")
    await pool.execute(
        "INSERT INTO outbound_messages (command_id, customer_id, channel, state, attempts)"
        " VALUES ($1, $2, 'api', 'sending', 1)",
        interrupted.command_id,
        interrupted.customer_id,
    )
    outcome = await dispatch(pool, {"rec": adapter}, interrupted)
    assert outcome.interaction.attributes[MAYBE_TWICE] is True
    assert outcome.status.state == DeliveryState.SENT
    assert [c.command_id for c in adapter.sent] == [fresh.command_id, interrupted.command_id]
    # once recorded, a redelivery of the command sends nothing more
    again = await dispatch(pool, {"rec": adapter}, interrupted)
    assert again.status.provider_message_id == "rec-2" and len(adapter.sent) == 2


async def test_outbound_commands_are_sealed_with_the_customers_key(
    client: httpx.AsyncClient, callback: CallbackServer, pool: asyncpg.Pool, stack: Any
) -> None:
    customer_id, _ = await new_customer(client)
    text = unique("Your refund is on its way")
    queued = await client.post(
        f"/v1/customers/{customer_id}/messages", json={"channel": "api", "text": text}
    )
    command_id = queued.json()["command_id"]
    records = await consume(
        stack.bootstrap,
        OUTBOUND.name,
        lambda rs: any(header_map(r.headers).get("ce_id") == command_id for r in rs),
    )
    [record] = [r for r in records if header_map(r.headers).get("ce_id") == command_id]
    assert header_map(record.headers)["content-type"] == SEALED_CONTENT_TYPE
    assert text.encode() not in record.value
    [opened] = await opened_values(pool, [record])
    assert opened is not None and OutboundCommand.model_validate_json(opened).text == text
    # the dispatcher opened and sent it
    await eventually(lambda: outbound_item(client, customer_id, command_id, "sent"), timeout=30)


class FailingAdapter(RecordingAdapter):
    """Records what it sends (provider ids unique to the test: they are unique a channel),
    and fails (not a SendError: the batch is retried) on one text."""

    def __init__(self, prefix: str, breaks: bool = True) -> None:
        super().__init__()
        self.prefix = prefix
        self.breaks = breaks

    async def send(self, command: OutboundCommand) -> SendResult:
        if self.breaks and command.text == "BROKEN":
            raise RuntimeError("the provider's connection broke")
        self.sent.append(command)
        return SendResult(provider_message_id=f"{self.prefix}-{len(self.sent)}")


async def test_a_batch_sends_each_command_once_and_each_customers_in_order(
    pool: asyncpg.Pool,
) -> None:
    adapter = FailingAdapter(unique("batch"))
    ann, bob = uuid.uuid4(), uuid.uuid4()
    to = Identity(type="email", value=f"{unique('batch')}@example.com")
    a1, a2, b1 = (
        OutboundCommand(customer_id=c, channel=Channel.API, to=to, text=t)
        for c, t in ((ann, "a1"), (ann, "a2"), (bob, "b1"))
    )
    outcomes = await dispatch_all(pool, {"rec": adapter}, [a1, b1, a2, a1])
    assert [o.status.command_id for o in outcomes] == [c.command_id for c in (a1, b1, a2, a1)]
    assert sorted(c.text for c in adapter.sent) == ["a1", "a2", "b1"]  # a1 once
    assert [c.text for c in adapter.sent if c.customer_id == ann] == ["a1", "a2"]
    assert outcomes[3].status.provider_message_id == outcomes[0].status.provider_message_id
    rows = await pool.fetch(
        "SELECT command_id, state, provider_message_id FROM outbound_messages"
        " WHERE command_id = ANY($1::uuid[])",
        [a1.command_id, a2.command_id, b1.command_id],
    )
    assert {r["state"] for r in rows} == {"sent"} and all(r["provider_message_id"] for r in rows)


async def test_a_failed_send_leaves_the_batchs_other_sends_recorded(pool: asyncpg.Pool) -> None:
    prefix = unique("broken")
    adapter = FailingAdapter(prefix)
    ann, bob = uuid.uuid4(), uuid.uuid4()
    to = Identity(type="email", value=f"{unique('broken')}@example.com")
    broken = OutboundCommand(customer_id=ann, channel=Channel.API, to=to, text="BROKEN")
    after = OutboundCommand(customer_id=ann, channel=Channel.API, to=to, text="after")
    other = OutboundCommand(customer_id=bob, channel=Channel.API, to=to, text="other")
    with pytest.raises(RuntimeError):
        await dispatch_all(pool, {"rec": adapter}, [broken, after, other])
    assert [c.text for c in adapter.sent] == ["other"]  # ann's next one waits for hers
    # the retried batch: what was sent is not sent again, what was never tried is no repeat,
    # the send that broke may have reached the provider
    retried = FailingAdapter(f"{prefix}-again", breaks=False)
    outcomes = await dispatch_all(pool, {"rec": retried}, [broken, after, other])
    again = {o.status.command_id: o for o in outcomes}
    assert [c.text for c in retried.sent] == ["BROKEN", "after"]
    assert again[other.command_id].status.provider_message_id == f"{prefix}-1"
    assert MAYBE_TWICE not in again[other.command_id].interaction.attributes
    assert MAYBE_TWICE not in again[after.command_id].interaction.attributes
    assert again[after.command_id].status.state == DeliveryState.SENT
    assert again[broken.command_id].interaction.attributes[MAYBE_TWICE] is True

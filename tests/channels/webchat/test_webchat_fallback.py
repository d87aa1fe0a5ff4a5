"""The web chat's fallback transport (Server-Sent Events + POST, for networks that block
WebSockets) against the suite's real `omnihub run api`, processors and dispatcher: the same
conversation as over the WebSocket (welcome, acks said once, an agent's reply live, resuming
exactly), origins checked on the stream and on every send, and no stream id in any URL."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest

from services.stack.ports import free_port, wait_for_port
from tests.channels.webchat.support import ORIGIN
from tests.channels.webchat.test_webchat import conversation, reply, row_of
from tests.support import eventually, start_component, stop_process

pytestmark = pytest.mark.usefixtures("processors", "dispatcher")

STREAM = "/channels/webchat/ws/stream"
SEND = "/channels/webchat/ws/send"


class Closed(Exception):
    """The hub ended the stream with ``event: close``."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code


class Stream:
    """One fallback stream: the hello POSTed, the hub's frames read as Server-Sent Events,
    frames sent by POST with the stream id in the body."""

    def __init__(self, http: httpx.AsyncClient, response: httpx.Response, origin: str) -> None:
        self.http = http
        self.response = response
        self.origin = origin
        self.lines = response.aiter_lines()
        self.id = ""

    @classmethod
    async def open(
        cls, http: httpx.AsyncClient, origin: str = ORIGIN, **hello: Any
    ) -> tuple[Stream, dict[str, Any]]:
        """Open a stream with a hello; the stream and the hub's first frame."""
        body = json.dumps({"type": "hello", "site": "acme", **hello})
        request = http.build_request("POST", STREAM, content=body, headers={"origin": origin})
        stream = cls(http, await http.send(request, stream=True), origin)
        assert stream.response.status_code == 200
        kind, data = await stream.event()
        assert kind == "stream" and len(data["stream"]) == 32, (kind, data)
        stream.id = data["stream"]
        return stream, await stream.receive()

    async def event(self, timeout: float = 20.0) -> tuple[str, dict[str, Any]]:
        """The next event (its type and data), comments skipped."""
        kind, data = "message", []
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line.startswith(":"):
                    continue
                if not line:
                    if data:
                        return kind, json.loads("\n".join(data))
                    continue
                field, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if field == "event":
                    kind = value
                elif field == "data":
                    data.append(value)
        raise AssertionError("the stream ended without a close event")

    async def receive(self, timeout: float = 20.0) -> dict[str, Any]:
        """The hub's next frame; Closed when it closed the stream instead."""
        kind, data = await self.event(timeout)
        if kind == "close":
            raise Closed(data["code"], data["reason"])
        assert kind == "message", (kind, data)
        return data

    async def post(self, frame: Any, origin: str | None = None) -> httpx.Response:
        body = {"stream": self.id, "frame": frame}
        headers = {"origin": origin or self.origin}
        return await self.http.post(SEND, json=body, headers=headers)

    async def say(self, client_id: str, text: str) -> dict[str, Any]:
        """Send a message; the hub's answer to it (ack or error)."""
        sent = await self.post({"type": "message", "client_id": client_id, "text": text})
        assert sent.status_code == 202, sent.text
        return await self.receive()

    async def close(self) -> None:
        await self.response.aclose()


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """A client without credentials (as the widget) and every URL it asked for."""
    urls: list[str] = []

    async def record(request: httpx.Request) -> None:
        urls.append(str(request.url))

    hooks = {"request": [record]}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, event_hooks=hooks) as found:
        yield found, urls


async def test_the_fallback_chats_acks_once_shows_replies_live_and_resumes_exactly(
    http: tuple[httpx.AsyncClient, list[str]], pool: asyncpg.Pool, client: httpx.AsyncClient
) -> None:
    web, urls = http
    stream, welcome = await Stream.open(web)
    ids = [stream.id]
    token = welcome["visitor"]
    try:
        headers = stream.response.headers
        assert headers["content-type"].startswith("text/event-stream")
        assert headers["x-accel-buffering"] == "no"
        assert headers["access-control-allow-origin"] == ORIGIN
        assert welcome["type"] == "welcome" and welcome["name"] == "Acme"
        ack = await stream.say("q", "Where is my <b>parcel</b>?")
        assert ack == {"type": "ack", "client_id": "q", "seq": 1, "text": "Where is my parcel?"}
        assert await stream.say("q", "Where is my <b>parcel</b>?") == ack, "a retry is the same"
        row = await row_of(pool, f"{conversation(welcome)}/q")
        count = await pool.fetchval(
            "SELECT count(*) FROM timeline WHERE provider_message_id = $1",
            f"{conversation(welcome)}/q",
        )
        assert count == 1
        command = await reply(client, row["customer_id"], "It left the depot this morning.")
        live = await stream.receive()
        assert live["type"] == "entry" and live["seq"] == 2
        assert (live["entry"]["id"], live["entry"]["text"]) == (
            command,
            "It left the depot this morning.",
        )
    finally:
        await stream.close()

    # the client went away: its stream is gone from the process
    async def gone() -> bool:
        sent = await stream.post({"type": "typing"})
        return sent.status_code == 404

    await eventually(gone, timeout=20)
    missed = [await reply(client, row["customer_id"], f"Update {n}") for n in (1, 2)]

    async def logged() -> bool:
        found = await pool.fetchval(
            "SELECT count(*) FROM conversation_log WHERE conversation = $1",
            conversation(welcome),
        )
        return bool(found == 4)

    await eventually(logged, timeout=30)
    stream, again = await Stream.open(web, visitor=token, after=2)
    ids.append(stream.id)
    try:
        assert again["visitor"] == token, "the same visitor, the same conversation"
        replayed = [await stream.receive(), await stream.receive()]
        assert [(f["seq"], f["entry"]["id"]) for f in replayed] == [(3, missed[0]), (4, missed[1])]
        later = await reply(client, row["customer_id"], "Delivered.")
        after = await stream.receive()
        assert (after["seq"], after["entry"]["id"]) == (5, later)
        read = await stream.post({"type": "read", "seq": 5})
        assert read.status_code == 202
    finally:
        await stream.close()
    assert urls and not [u for u in urls for i in ids if i in u], "a stream id in a URL"


async def test_a_wrong_origin_is_refused_on_the_stream_on_a_send_and_by_cors(
    http: tuple[httpx.AsyncClient, list[str]],
) -> None:
    web, _ = http
    evil = "https://evil.example"
    try:
        stream, answer = await Stream.open(web, origin=evil)
    except Closed as exc:
        assert exc.code == 4403
    else:
        await stream.close()
        raise AssertionError(f"accepted: {answer}")
    # the refusal is in the body; a browser on that page may not even read it
    body = json.dumps({"type": "hello", "site": "acme"})
    refused = await web.post(STREAM, content=body, headers={"origin": evil})
    assert refused.status_code == 200 and '"code": 4403' in refused.text
    assert "access-control-allow-origin" not in refused.headers
    for path in (STREAM, SEND):
        preflight = {"origin": evil, "access-control-request-method": "POST"}
        denied = await web.options(path, headers=preflight)
        assert denied.status_code == 403
        assert "access-control-allow-origin" not in denied.headers
        allowed = await web.options(path, headers={**preflight, "origin": ORIGIN})
        assert allowed.status_code == 204
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]

    # a stream of the right origin takes frames of that origin only
    stream, welcome = await Stream.open(web)
    try:
        assert welcome["type"] == "welcome"
        other = await stream.post({"type": "message", "client_id": "x", "text": "hi"}, evil)
        assert (other.status_code, other.json()["error"]) == (403, "wrong_origin")
        assert "access-control-allow-origin" not in other.headers
        assert (await stream.say("ok", "still mine"))["type"] == "ack"
    finally:
        await stream.close()


async def test_a_send_to_an_unknown_stream_or_a_bad_send_is_refused(
    http: tuple[httpx.AsyncClient, list[str]],
) -> None:
    web, _ = http
    headers = {"origin": ORIGIN}
    frame = {"type": "message", "client_id": "n", "text": "anyone?"}
    unknown = await web.post(SEND, json={"stream": "0" * 32, "frame": frame}, headers=headers)
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_stream")
    assert unknown.headers["access-control-allow-origin"] == ORIGIN
    bad = await web.post(SEND, content=b"not json", headers=headers)
    assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")
    assert (await web.get(STREAM)).status_code == 405

    # a frame the adapter cannot use is answered on the stream, as over the WebSocket
    stream, _ = await Stream.open(web)
    try:
        sent = await stream.post({"type": "nonsense"})
        assert sent.status_code == 202
        error = await stream.receive()
        assert (error["type"], error["code"]) == ("error", "bad_frame")
    finally:
        await stream.close()


async def test_a_web_process_that_stops_ends_its_streams_and_is_not_held_up(
    component_env: dict[str, str], tmp_path: Any
) -> None:
    port = free_port()
    env = dict(component_env, OMNIHUB_HTTP_PORT=str(port))
    proc = start_component("api", env, tmp_path / "api.log")
    try:
        wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as web:
            stream, welcome = await Stream.open(web)
            assert welcome["type"] == "welcome"
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(Closed) as closed:
                await stream.receive()
            assert closed.value.code == 1012, "the server restarts: reconnect and resume"
            await stream.close()
        # stopped, not held up (uvicorn re-raises the signal it handled once it is done)
        assert await asyncio.to_thread(proc.wait, 20) in (0, -signal.SIGTERM)
    finally:
        stop_process(proc)

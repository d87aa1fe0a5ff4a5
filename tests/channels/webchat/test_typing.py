"""Typing both ways between the widget and the console, against the suite's real `omnihub run
api` (web chat and console in one process), processors and PostgreSQL: a visitor's typing
reaches the console's event stream of their customer, an agent's typing (a CSRF-protected
POST) reaches the visitor's socket, and a flood of typing frames is dropped without a word.
Nothing of it is stored: the frames carry no text and the timeline never sees them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from channels.webchat.protocol import BadFrame, Typing, client_frame
from services.stack.ports import free_port, wait_for_port
from tests.channels.webchat.support import Widget
from tests.console_support import ConsoleHttp, make_user
from tests.support import eventually, start_component, stop_process

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
def ws_url(api_url: str) -> str:
    return api_url.replace("http://", "ws://") + "/channels/webchat/ws"


@pytest.fixture
async def agent(api_url: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[ConsoleHttp, str]]:
    """A signed-in agent, and their username."""
    user = await make_user(pool, "agent", ["after_sales"])
    console = ConsoleHttp(api_url)
    await console.sign_in(user.username)
    assert console.signed_in
    yield console, user.username
    await console.close()


@pytest.fixture
def channel_ws(component_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A second web process, `omnihub run channel webchat`: its socket URL."""
    port = free_port()
    env = dict(component_env, OMNIHUB_HTTP_PORT=str(port))
    proc = start_component("channel webchat", env, tmp_path / "webchat.log")
    try:
        wait_for_port("127.0.0.1", port, 60, alive=lambda: proc.poll() is None)
        yield f"ws://127.0.0.1:{port}/channels/webchat/ws"
    finally:
        stop_process(proc)


def conversation(welcome: dict[str, Any]) -> str:
    site, visitor, _ = welcome["visitor"].split(".")
    return f"{site}:{uuid.UUID(visitor)}"


async def visitor_with_customer(ws_url: str, pool: asyncpg.Pool) -> tuple[Widget, str]:
    """A widget whose first message made its customer; the customer's id."""
    widget, welcome = await Widget.open(ws_url)
    assert (await widget.say("first", "Hello, anyone there?"))["type"] == "ack"
    customer = await eventually(
        lambda: pool.fetchval(
            "SELECT customer_id FROM timeline WHERE provider_message_id = $1",
            f"{conversation(welcome)}/first",
        ),
        timeout=60,
    )
    return widget, str(customer)


async def events(
    console: ConsoleHttp,
    customer: str,
    on_ready: Callable[[], Awaitable[None]],
    until: Callable[[list[str]], bool],
    timeout: float = 60.0,
) -> list[str]:
    """The event names the console's stream of ``customer`` sends (``on_ready`` run on its
    first ``ready``), reconnecting as a page does, until ``until`` holds of them."""
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in console.cookies.items())}
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    ready = False
    while time.monotonic() < deadline:
        url = f"/console/customers/{customer}/events"
        async with console.http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code == 200
            async for line in stream.aiter_lines():
                if not line.startswith("event: "):
                    continue
                name = line.removeprefix("event: ")
                seen.append(name)
                if name == "ready" and not ready:
                    ready = True
                    await on_ready()
                if until(seen):
                    return seen
    raise AssertionError(f"the stream sent {seen} within {timeout}s")


def test_the_typing_frame_is_validated() -> None:
    assert isinstance(client_frame('{"type": "typing"}'), Typing)
    with pytest.raises(BadFrame):
        client_frame('{"type": "typing", "text": "what I am typing"}')


async def test_a_visitors_typing_reaches_the_console_stream_of_their_customer(
    ws_url: str, pool: asyncpg.Pool, agent: tuple[ConsoleHttp, str]
) -> None:
    console, _ = agent
    widget, customer = await visitor_with_customer(ws_url, pool)
    try:

        async def typing() -> None:
            await widget.send({"type": "typing"})

        seen = await events(console, customer, typing, lambda seen: "typing" in seen)
        assert seen[0] == "ready"
        # a typing frame with anything more is refused like any malformed frame
        await widget.send({"type": "typing", "text": "secret"})
        refused = await widget.receive()
        assert (refused["type"], refused["code"]) == ("error", "bad_frame")
    finally:
        await widget.close()
    # nothing of it was stored: the timeline holds the one message
    count = await pool.fetchval(
        "SELECT count(*) FROM timeline WHERE customer_id = $1", uuid.UUID(customer)
    )
    assert count == 1


async def test_an_agents_typing_reaches_the_visitors_socket_and_needs_csrf(
    ws_url: str, pool: asyncpg.Pool, agent: tuple[ConsoleHttp, str]
) -> None:
    console, username = agent
    widget, customer = await visitor_with_customer(ws_url, pool)
    try:
        page = await console.get(f"/console/customers/{customer}")
        assert page.status_code == 200
        assert 'value="webchat" selected data-typing' in page.text or (
            'value="webchat" data-typing' in page.text
        ), "the page announces typing on the web chat option"
        url = f"/console/customers/{customer}/typing"
        refused = await console.post(url, {"channel": "webchat"})
        assert refused.status_code == 403, "no CSRF token"
        csrf = await console.csrf(f"/console/customers/{customer}")
        wrong = await console.post(url, {"channel": "webchat"}, headers={"x-csrf-token": "x"})
        assert wrong.status_code == 403
        unknown = await console.post(url, {"channel": "pigeon"}, headers={"x-csrf-token": csrf})
        assert unknown.status_code == 422
        sent = await console.post(url, {"channel": "webchat"}, headers={"x-csrf-token": csrf})
        assert sent.status_code == 204, sent.text
        shown = await widget.receive()
        assert shown == {"type": "typing", "author": username}
        # a channel that shows no typing is accepted and does nothing
        other = await console.post(url, {"channel": "email"}, headers={"x-csrf-token": csrf})
        assert other.status_code == 204
        # the visitor's socket goes on as before: the next frame is its message's ack
        assert (await widget.say("second", "Thanks"))["type"] == "ack"
    finally:
        await widget.close()


async def test_a_flood_of_typing_frames_is_dropped_silently(
    ws_url: str, pool: asyncpg.Pool, agent: tuple[ConsoleHttp, str]
) -> None:
    console, _ = agent
    widget, customer = await visitor_with_customer(ws_url, pool)
    answers: list[dict[str, Any]] = []
    try:

        async def flood() -> None:
            for _ in range(50):
                await widget.send({"type": "typing"})
            answers.append(await widget.say("after", "Still there?"))

        # the flood's typing events, then the message's timeline event
        seen = await events(console, customer, flood, lambda seen: "timeline" in seen)
    finally:
        await widget.close()
    assert answers and answers[0]["type"] == "ack", "no error for the dropped frames"
    announced = seen.count("typing")
    assert 1 <= announced <= 5, f"a flood of 50 made {announced} announcements"


async def test_typing_crosses_web_processes(
    channel_ws: str, pool: asyncpg.Pool, agent: tuple[ConsoleHttp, str]
) -> None:
    """The visitor on a channel process, the agent on the API process: each sees the other
    type (NOTIFY reaches every process listening)."""
    console, username = agent
    widget, customer = await visitor_with_customer(channel_ws, pool)
    try:

        async def typing() -> None:
            await widget.send({"type": "typing"})

        await events(console, customer, typing, lambda seen: "typing" in seen)
        csrf = await console.csrf(f"/console/customers/{customer}")
        url = f"/console/customers/{customer}/typing"

        async def shown() -> dict[str, Any] | None:
            # said again until the process listens (an announcement nobody hears is gone)
            sent = await console.post(url, {"channel": "webchat"}, headers={"x-csrf-token": csrf})
            assert sent.status_code == 204
            try:
                found: dict[str, Any] = await widget.receive(timeout=3)
            except TimeoutError:
                return None
            return found

        assert await eventually(shown, timeout=60, interval=0) == {
            "type": "typing",
            "author": username,
        }
    finally:
        await widget.close()

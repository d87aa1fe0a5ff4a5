"""The benchmark's HTTP load generator against a real HTTP server on loopback (aiohttp's)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from services.bench.load import Request, at_rate, encode, saturate
from services.stack.ports import free_port


@dataclass
class Server:
    """Answers 202 to even-numbered bodies and 400 to odd ones; remembers what it got."""

    close_every: bool = False
    bodies: list[bytes] = field(default_factory=list)
    headers: list[str | None] = field(default_factory=list)
    peers: set[tuple[str, int]] = field(default_factory=set)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.bodies.append(body)
        self.headers.append(request.headers.get("X-Test"))
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        status = 202 if int(body.split(b"=")[1]) % 2 == 0 else 400
        close = {"Connection": "close"} if self.close_every else {}
        return web.Response(status=status, text='{"ok":true}', headers=close)


@pytest.fixture
async def served() -> AsyncIterator[tuple[Server, str]]:
    """A running server and the URL to post to."""
    server = Server()
    app = web.Application()
    app.router.add_post("/in", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield server, f"http://127.0.0.1:{port}/in?x=1"
    await runner.cleanup()


def requests(url: str, count: int) -> list[Request]:
    """``count`` form posts numbered 0..count-1."""
    return [(url, f"n={n}".encode(), {"X-Test": f"t{n}"}) for n in range(count)]


async def test_every_request_arrives_once_on_kept_alive_connections(
    served: tuple[Server, str],
) -> None:
    server, url = served
    result = await saturate(requests(url, 60), concurrency=4)
    assert sorted(server.bodies) == sorted(f"n={n}".encode() for n in range(60))
    assert sorted(server.headers, key=str) == sorted((f"t{n}" for n in range(60)), key=str)
    assert result.statuses == {202: 30, 400: 30}
    assert result.errors == 0 and len(result.latencies) == 60
    assert len(server.peers) <= 4  # kept alive: no more connections than in flight
    summary = result.summary()
    assert summary["requests"] == 60 and summary["statuses"] == {"202": 30, "400": 30}


async def test_a_server_closing_each_connection_is_reconnected(
    served: tuple[Server, str],
) -> None:
    server, url = served
    server.close_every = True
    result = await saturate(requests(url, 20), concurrency=3)
    assert result.statuses == {202: 10, 400: 10} and result.errors == 0
    assert len(server.peers) == 20  # one connection a request, as the server asked


async def test_open_loop_sends_everything(served: tuple[Server, str]) -> None:
    server, url = served
    result = await at_rate(requests(url, 30), per_second=300)
    assert Counter(server.bodies) == Counter(f"n={n}".encode() for n in range(30))
    assert result.statuses == {202: 15, 400: 15} and result.errors == 0


async def test_an_unreachable_server_counts_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/in"
    result = await saturate(requests(url, 5), concurrency=2)
    assert result.errors == 5 and result.statuses == {}
    assert result.summary()["requests"] == 5


def test_encoding_is_plain_http_1_1() -> None:
    raw = encode(("http://localhost:8080/v1/x?a=b", b"{}", {"Authorization": "Bearer t"})).raw
    assert raw == (
        b"POST /v1/x?a=b HTTP/1.1\r\nHost: localhost:8080\r\nAuthorization: Bearer t\r\n"
        b"Content-Length: 2\r\n\r\n{}"
    )
    with pytest.raises(ValueError, match="plain http"):
        encode(("https://example.com/", b"", {}))

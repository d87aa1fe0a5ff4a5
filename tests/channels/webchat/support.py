"""The web chat channel's test settings: two sites (one requiring signed-in users), the
visitor key, and a WebSocket client that speaks the widget's frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import websockets
from aiohttp import web

from channels.webchat.visitors import claim_signature

VISITOR_KEY = "test-webchat-visitor-key-0123456789abcdef"
SECRET = "site-secret-of-the-acme-shop-0123456789"
ORIGIN = "https://shop.acme.example"
SITES = [
    {"id": "acme", "name": "Acme", "origins": [ORIGIN], "secret": SECRET, "colour": "#b0005e"},
    {
        "id": "members",
        "name": "Acme members",
        "origins": [ORIGIN],
        "secret": SECRET,
        "require_verification": True,
    },
    # its own address buckets: the test that exhausts them leaves the others' alone
    {"id": "flood", "name": "Flood", "origins": [ORIGIN]},
]


#: A 1x1 PNG, what a visitor's image starts with.
PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7V\x9d\xf1"
    b"\x00\x00\x00\x00IEND\xaeB`\x82"
)


#: The scan hook of the suite's hub processes: a scanner that knows the EICAR test file.
SCANNER = f"{sys.executable} {Path(__file__).with_name('eicar_scanner.py')}"


def webchat_env(*page_origins: str) -> dict[str, str]:
    """The web chat settings of the suite's hub processes; ``page_origins`` may also embed the
    acme site's widget (the browser tests' pages)."""
    sites = [{**SITES[0], "origins": [ORIGIN, *page_origins]}, *SITES[1:]]
    return {
        "WEBCHAT_SITES": json.dumps(sites),
        "WEBCHAT_VISITOR_KEY": VISITOR_KEY,
        "WEBCHAT_SCAN_COMMAND": SCANNER,
    }


def claim(user_id: str, email: str | None = None, *, ttl: int = 600, secret: str = SECRET) -> Any:
    """A signed-in user's claim as the site's backend signs it."""
    expires = int(time.time()) + ttl
    signature = claim_signature(secret.encode(), user_id, email, expires)
    found: dict[str, Any] = {"id": user_id, "expires": expires, "signature": signature}
    if email is not None:
        found["email"] = email
    return found


class Widget:
    """One widget connection: hello, then frames both ways."""

    def __init__(self, socket: Any) -> None:
        self.socket = socket

    @classmethod
    async def open(
        cls, url: str, origin: str = ORIGIN, **hello: Any
    ) -> tuple[Widget, dict[str, Any]]:
        socket = await websockets.connect(url, origin=origin)  # type: ignore[arg-type]
        widget = cls(socket)
        await widget.send({"type": "hello", "site": "acme", **hello})
        return widget, await widget.receive()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def receive(self, timeout: float = 20.0) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(await asyncio_wait(self.socket.recv(), timeout))
        return found

    async def say(self, client_id: str, text: str) -> dict[str, Any]:
        """Send a message; the hub's answer to it (ack or error)."""
        await self.send({"type": "message", "client_id": client_id, "text": text})
        return await self.receive()

    async def close(self) -> None:
        await self.socket.close()


async def asyncio_wait(awaitable: Any, timeout: float) -> Any:
    return await asyncio.wait_for(awaitable, timeout)


@contextlib.asynccontextmanager
async def hosted_page(
    port: int, render: Callable[[web.Request], str], csp: str
) -> AsyncIterator[str]:
    """A site's page that embeds the widget, on its own origin (loopback ``port``) under
    ``csp``; its address while open."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(
            text=render(request), content_type="text/html", headers={"Content-Security-Policy": csp}
        )

    app = web.Application()
    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()

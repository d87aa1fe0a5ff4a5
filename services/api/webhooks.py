"""The webhooks' fast path: a provider's POST goes straight to the shared ``receive`` flow.

Profiled under load, FastAPI's routing, dependency solving and middleware stack took about a
third of a webhook's time in the web process. Webhooks need none of it: they carry no bearer
token, no JSON model and no dependency, and ``receive`` does all their work (verify, parse,
publish, acknowledge). This ASGI layer sits in front of the framework and serves exactly the
paths adapters declare in ``ChannelAdapter.webhooks``; everything else goes to FastAPI. The
body limit (413) and the request metrics are the same as on the framework's path.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from channels.base import ChannelAdapter, InboundRequest, Publisher, receive
from channels.base.webhook import WebhookReply
from services.api.metrics import LATENCY, REQUESTS

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class TooLarge(Exception):
    """The request body is over the limit."""


class WebhookFastPath:
    """ASGI middleware serving declared webhook paths without the framework's routing."""

    def __init__(
        self,
        app: Any,
        adapters: dict[str, ChannelAdapter],
        publisher: Publisher,
        max_bytes: int,
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.max_bytes = max_bytes
        self.routes = {
            f"/channels/{name}/{hook}": adapter
            for name, adapter in adapters.items()
            for hook in adapter.webhooks
        }
        self._latency = {path: LATENCY.labels(path) for path in self.routes}

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        """Serve a declared webhook, or hand the request to the app."""
        adapter = None
        if scope["type"] == "http" and scope["method"] == "POST":
            adapter = self.routes.get(scope["path"])
        if adapter is None:
            await self.app(scope, receive_, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        try:
            request = snapshot(scope, await read_body(receive_, self.max_bytes))
        except TooLarge:
            reply = WebhookReply(413, f"request body larger than {self.max_bytes} bytes".encode())
        else:
            reply = await receive(adapter, self.publisher, request)
        await respond(send, reply)
        REQUESTS.labels(path, str(reply.status)).inc()
        self._latency[path].observe(time.perf_counter() - start)


async def read_body(receive_: Receive, max_bytes: int) -> bytes:
    """The whole request body; TooLarge as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive_()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def snapshot(scope: Scope, body: bytes) -> InboundRequest:
    """The InboundRequest of an ASGI scope: the URL as the client asked for it (Host header),
    headers by lower-case name (the last of a repeated one), query parameters."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    host = headers.get("host")
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    query = scope.get("query_string", b"").decode("latin-1")
    url = f"{scope['scheme']}://{host}{scope.get('root_path', '')}{scope['path']}"
    return InboundRequest(
        method=scope["method"],
        url=f"{url}?{query}" if query else url,
        headers=headers,
        body=body,
        query=dict(parse_qsl(query, keep_blank_values=True)),
    )


async def respond(send: Send, reply: WebhookReply) -> None:
    """Send ``reply`` as the HTTP response."""
    await send(
        {
            "type": "http.response.start",
            "status": reply.status,
            "headers": [
                (b"content-type", reply.content_type.encode("latin-1")),
                (b"content-length", str(len(reply.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": reply.body})

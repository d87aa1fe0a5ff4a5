"""The webhooks' fast path: a provider's POST goes straight to the shared ``receive`` flow.

Profiled under load, FastAPI's routing, dependency solving and middleware stack took about a
third of a webhook's time in the web process. Webhooks need none of it: they carry no bearer
token, no JSON model and no dependency, and ``receive`` does all their work (verify, parse,
publish, acknowledge). This ASGI layer serves exactly the paths adapters declare in
``ChannelAdapter.webhooks`` and hands everything else to the app. It sits inside
``RequestMetrics`` (it names the route it serves, so requests are counted under it) and puts
the same ``BodyLimit`` in front of the webhooks as the app has (413 over the limit).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from channels.base import ChannelAdapter, Publisher, receive
from channels.base.http import request_of
from channels.base.webhook import WebhookReply
from services.api.limits import BodyLimit, Scope

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class WebhookRoute:
    """What ``scope["route"]`` holds for a webhook (RequestMetrics reads its ``path``)."""

    path: str
    adapter: ChannelAdapter


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
        self.routes = {
            path: WebhookRoute(path, adapter)
            for name, adapter in adapters.items()
            for path in (f"/channels/{name}/{hook}" for hook in adapter.webhooks)
        }
        self._limited = BodyLimit(self._serve, max_bytes)

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        """Serve a declared webhook, or hand the request to the app."""
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = self.routes.get(scope["path"])
        if route is None:
            await self.app(scope, receive_, send)
            return
        scope["route"] = route
        await self._limited(scope, receive_, send)

    async def _serve(self, scope: Scope, receive_: Receive, send: Send) -> None:
        request = request_of(scope, await read_body(receive_))
        await respond(send, await receive(scope["route"].adapter, self.publisher, request))


async def read_body(receive_: Receive) -> bytes:
    """The whole request body."""
    chunks: list[bytes] = []
    while True:
        message = await receive_()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


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

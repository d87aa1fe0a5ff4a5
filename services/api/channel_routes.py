"""The one path a channel's request takes: every adapter's declared routes and sessions.

This ASGI layer sits in front of FastAPI and serves exactly what adapters declare
(``WebhookAdapter.routes``, ``SessionAdapter.sessions``): routing, dependency solving and
response models are not needed there, and skipping them halves a webhook's time in the web
process (docs/performance.md). Everything else goes on to the app.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.datastructures import URL, Headers
from starlette.websockets import WebSocket, WebSocketDisconnect

from channels.base import (
    ChannelAdapter,
    InboundRequest,
    Publisher,
    Route,
    SessionAdapter,
    SessionClosed,
    SessionRoute,
    WebhookAdapter,
    WebhookReply,
    receive,
)
from channels.base.adapter import Caller
from channels.base.webhook import error_reply
from services import tracing
from services.api import outage
from services.api.auth import Principal, authorize
from services.api.errors import database_unavailable
from services.api.limits import BodyLimit, Scope
from services.api.session_fallback import SessionFallback

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
log = logging.getLogger(__name__)


@dataclass
class Served:
    """A declared path: its adapter and route by method (RequestMetrics reads ``path``)."""

    path: str
    adapter: WebhookAdapter
    routes: dict[str, Route] = field(default_factory=dict)
    limited: dict[str, BodyLimit] = field(default_factory=dict)


def request_of(
    scope: MutableMapping[str, Any], body: bytes, principal: Principal | None = None
) -> InboundRequest:
    """Snapshot an ASGI HTTP request (its scope and whole body) for an adapter: the URL as the
    client asked for it, headers by lower-case name (the last of a repeated one), query
    parameters (the last of a repeated one), and who the bearer token authenticated."""
    query = scope.get("query_string", b"").decode("latin-1")
    return InboundRequest(
        method=scope["method"],
        url=str(URL(scope=scope)),
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
        query=dict(parse_qsl(query, keep_blank_values=True)),
        caller=caller_of(principal) if principal else None,
    )


def caller_of(principal: Principal) -> Caller:
    """The adapter's view of an authenticated caller: its token id, name and channels."""
    return Caller(str(principal.token_id), principal.name, principal.channels)


class ChannelRoutes:
    """ASGI middleware serving the adapters' routes and sessions."""

    def __init__(
        self, app: Any, adapters: Mapping[str, ChannelAdapter], publisher: Publisher
    ) -> None:
        self.app = app
        self.publisher = publisher
        self.served: dict[str, Served] = {}
        self.sessions: dict[str, tuple[SessionAdapter, SessionRoute]] = {}
        for name, adapter in adapters.items():
            if isinstance(adapter, WebhookAdapter):
                for route in adapter.routes:
                    self._add(name, adapter, route)
            if isinstance(adapter, SessionAdapter):
                for session in adapter.sessions:
                    self.sessions[session.full_path(name)] = (adapter, session)
        # each session also over Server-Sent Events + POST, where WebSockets are blocked
        self.fallback = SessionFallback(self.sessions)

    def _add(self, name: str, adapter: WebhookAdapter, route: Route) -> None:
        path = route.full_path(name)
        served = self.served.setdefault(path, Served(path, adapter))
        if served.adapter is not adapter:
            raise ValueError(f"{path} is declared by two adapters")
        for method in route.methods:
            if method in served.routes:
                raise ValueError(f"{method} {path} is declared twice")
            served.routes[method] = route
            served.limited[method] = BodyLimit(self._serve, adapter.body_limit(route))

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        """Serve a declared route or session, or hand the request to the app; the records made
        while it is served carry the trace it came with (``services.tracing``)."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive_, send)
            return
        token = tracing.enter_request(scope["headers"])
        try:
            await self._dispatch(scope, receive_, send)
        finally:
            tracing.leave_request(token)

    async def _dispatch(self, scope: Scope, receive_: Receive, send: Send) -> None:
        if scope["type"] == "http" and (served := self.served.get(scope["path"])):
            scope["route"] = served
            limited = served.limited.get(scope["method"])
            if limited is None:
                allow = ", ".join(served.routes)
                reply = WebhookReply(405, b"method not allowed", headers=(("allow", allow),))
                await respond(send, reply)
                return
            await limited(scope, receive_, send)
            return
        if scope["type"] == "websocket" and (session := self.sessions.get(scope["path"])):
            await serve_session(*session, scope, receive_, send)
            return
        if scope["type"] == "http" and self.sessions and self.fallback.match(scope["path"]):
            await self.fallback(scope, receive_, send)
            return
        await self.app(scope, receive_, send)

    async def _serve(self, scope: Scope, receive_: Receive, send: Send) -> None:
        served: Served = scope["route"]
        route = served.routes[scope["method"]]
        principal: Principal | None = None
        if route.scopes:  # who is calling first, then the body
            try:
                header = Headers(scope=scope).get("authorization", "")
                principal = await authorize(scope["app"].state.tokens, header, route.scopes)
            except HTTPException as exc:
                await respond(send, _error_reply(route, exc))
                return
            except Exception as exc:
                if not outage.refused(scope["app"], exc):
                    raise
                await respond(send, _error_reply(route, database_unavailable()))
                return
        request = request_of(scope, await read_body(receive_), principal)
        await respond(send, await receive(served.adapter, self.publisher, request, route))


def _error_reply(route: Route, exc: HTTPException) -> WebhookReply:
    """The route's error reply for ``exc``, with its headers (WWW-Authenticate, Retry-After)."""
    reply = error_reply(route, exc.status_code, exc.detail)
    own = {name.lower() for name, _ in reply.headers}
    extra = tuple((exc.headers or {}).items())
    extra = tuple(reply.headers) + tuple(h for h in extra if h[0].lower() not in own)
    return WebhookReply(reply.status, reply.body, reply.content_type, extra)


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
    headers = [
        (b"content-type", reply.content_type.encode("latin-1")),
        (b"content-length", str(len(reply.body)).encode()),
    ]
    headers += [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


class WebSocketConnection:
    """A Starlette WebSocket as the adapters' ``ClientConnection``."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket
        self.headers: Mapping[str, str] = dict(websocket.headers)
        self.query: Mapping[str, str] = dict(websocket.query_params)
        # the peer as uvicorn reports it (X-Forwarded-For only from FORWARDED_ALLOW_IPS)
        self.peer = websocket.client.host if websocket.client else "unknown"

    async def receive_text(self) -> str:
        """The client's next text message; SessionClosed once it has gone."""
        try:
            return await self.websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            raise SessionClosed from None

    async def send_text(self, text: str) -> None:
        """Send a text message; SessionClosed once the client has gone."""
        try:
            await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError):
            raise SessionClosed from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (nothing if it is closed already)."""
        try:
            await self.websocket.close(code, reason)
        except RuntimeError:
            pass


async def serve_session(
    adapter: SessionAdapter, route: SessionRoute, scope: Scope, receive_: Receive, send: Send
) -> None:
    """Accept a client's WebSocket and let the adapter hold it until it closes."""
    websocket = WebSocket(scope, receive_, send)
    await websocket.accept()
    connection = WebSocketConnection(websocket)
    try:
        await adapter.serve(connection, route)
    except SessionClosed:
        pass
    except Exception:
        log.exception("%s: session failed", adapter.name)
        await connection.close(1011, "internal error")
        return
    await connection.close()

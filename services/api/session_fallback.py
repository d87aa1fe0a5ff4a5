"""Every ``SessionRoute`` also over Server-Sent Events + POST, for networks whose proxies block
WebSockets; the adapter serves it as one more ``ClientConnection`` and never knows.

- ``POST <path>/stream``, its body the client's first frame (a hello), answers
  ``text/event-stream``: first ``event: stream`` with ``{"stream": <id>}`` (128 random bits),
  then each frame the adapter sends as one ``data:`` event, a comment every
  ``HEARTBEAT_SECONDS`` so proxies keep it open, and on the adapter's ``close(code, reason)``
  a last ``event: close`` with ``{"code", "reason"}``, as the WebSocket's close would say.
- ``POST <path>/send``, ``{"stream": <id>, "frame": <the frame>}``, hands the frame to that
  stream's ``receive_text`` (202); 404 ``unknown_stream`` when this process holds no such
  stream (the client reopens one and resumes), 403 ``wrong_origin`` when the ``Origin`` is
  not the stream's.

The stream id travels in request bodies only, never in a URL (where access logs and
referrers would keep it). A stream lives in the process that opened it: behind several web
processes the load balancer must send a client to the same one (session affinity).
CORS: a browser page may read the answers only when the adapter's ``allowed_origin`` says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import weakref
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from channels.base import SessionAdapter, SessionClosed, SessionRoute

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
log = logging.getLogger(__name__)

#: A comment this often keeps proxies from closing a quiet stream (most give up after 30-60 s).
HEARTBEAT_SECONDS = 15.0
#: The largest frame, as uvicorn's default for a WebSocket message (``ws_max_size``).
MAX_FRAME_BYTES = 16 * 1024 * 1024
#: Frames sent and not yet read by the adapter; beyond, a send gets 429 (a flood, not a chat).
QUEUED_FRAMES = 64
STREAM, SEND = "/stream", "/send"
#: The close code of a stream its server ended on stopping (RFC 6455's "service restart").
RESTART = 1012
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def sse_event(data: str, event: str = "") -> bytes:
    """One Server-Sent Event: ``data`` on as many ``data:`` lines as it has lines (SSE's own
    line breaks only, so U+2028 inside JSON stays where it is)."""
    head = f"event: {event}\n" if event else ""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return (head + lines + "\n").encode()


class StreamConnection:
    """One fallback stream as the adapters' ``ClientConnection``: frames in from ``/send``
    requests, frames out as events on the open response."""

    def __init__(self, scope: MutableMapping[str, Any], first: str, send: Send) -> None:
        self.id = secrets.token_hex(16)
        self.path: str = scope["path"][: -len(STREAM)]
        self.headers: Mapping[str, str] = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        query = scope.get("query_string", b"").decode("latin-1")
        self.query: Mapping[str, str] = dict(parse_qsl(query, keep_blank_values=True))
        client = scope.get("client")
        # the peer as uvicorn reports it (X-Forwarded-For only from FORWARDED_ALLOW_IPS)
        self.peer: str = client[0] if client else "unknown"
        self.origin = self.headers.get("origin", "")
        self._first: str | None = first
        self._inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self._send = send
        self._lock = asyncio.Lock()
        #: No more events: the adapter closed the stream, or the client went away.
        self.closed = False
        self._finished = False

    def offer(self, text: str) -> bool:
        """Queue a frame the client sent; False when the stream is gone or too far behind."""
        if self.closed or self._inbox.qsize() >= QUEUED_FRAMES:
            return False
        self._inbox.put_nowait(text)
        return True

    def lost(self) -> None:
        """The client went away: ``receive_text`` and ``send_text`` say SessionClosed."""
        if not self.closed:
            self.closed = True
            self._inbox.put_nowait(None)

    async def receive_text(self) -> str:
        """The hello first, then each frame sent; SessionClosed once the stream is gone."""
        if self._first is not None:
            first, self._first = self._first, None
            return first
        text = await self._inbox.get()
        if text is None:
            self._inbox.put_nowait(None)  # every later call ends the same way
            raise SessionClosed
        return text

    async def send_text(self, text: str) -> None:
        """One ``data:`` event; SessionClosed once the stream is gone."""
        await self.write(sse_event(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """End the stream with ``event: close`` (nothing if it has ended already)."""
        event = sse_event(json.dumps({"code": code, "reason": reason}), "close")
        with contextlib.suppress(SessionClosed):
            await self.write(event, last=True)

    async def write(self, chunk: bytes, last: bool = False) -> None:
        """Send ``chunk`` on the response (``last``: and end it); one writer at a time."""
        async with self._lock:
            if self.closed:
                raise SessionClosed
            if last:
                self.lost()
                self._finished = True
            try:
                message = {"type": "http.response.body", "body": chunk, "more_body": not last}
                await self._send(message)
            except (OSError, RuntimeError):
                self.lost()
                raise SessionClosed from None

    async def finish(self) -> None:
        """End the response if nothing ended it (the client went away first)."""
        async with self._lock:
            self.lost()
            if not self._finished:
                self._finished = True
                with contextlib.suppress(OSError, RuntimeError):
                    await self._send({"type": "http.response.body", "body": b""})


@dataclass(frozen=True)
class _Path:
    """What RequestMetrics labels a fallback request with."""

    path: str


class SessionFallback:
    """Serves ``<path>/stream`` and ``<path>/send`` of every declared session, holding this
    process's open streams."""

    def __init__(self, sessions: Mapping[str, tuple[SessionAdapter, SessionRoute]]) -> None:
        self.sessions = sessions
        self.streams: dict[str, StreamConnection] = {}
        _FALLBACKS.add(self)

    def match(self, path: str) -> tuple[SessionAdapter, SessionRoute, str] | None:
        """The session and endpoint (``/stream`` or ``/send``) ``path`` names, if any."""
        for suffix in (STREAM, SEND):
            if path.endswith(suffix) and (found := self.sessions.get(path[: -len(suffix)])):
                return found[0], found[1], suffix
        return None

    async def __call__(
        self, scope: MutableMapping[str, Any], receive_: Receive, send: Send
    ) -> None:
        """Answer a preflight, open a stream or take a frame."""
        found = self.match(scope["path"])
        assert found is not None, "ask match() first"
        adapter, route, endpoint = found
        scope["route"] = _Path(scope["path"])
        origin = _header(scope, b"origin")
        cors = _cors(adapter, origin)
        if scope["method"] == "OPTIONS":
            await _preflight(send, cors)
        elif scope["method"] != "POST":
            await _answer(send, 405, {"error": "method_not_allowed"}, [("allow", "POST, OPTIONS")])
        elif (body := await _body(scope, receive_)) is None:
            await _answer(send, 413, {"error": "too_large"}, cors)
        elif endpoint == STREAM:
            await self._stream(adapter, route, scope, body, receive_, send, cors)
        else:
            await self._take(scope["path"][: -len(SEND)], origin, body, send, cors)

    async def _stream(
        self,
        adapter: SessionAdapter,
        route: SessionRoute,
        scope: MutableMapping[str, Any],
        body: bytes,
        receive_: Receive,
        send: Send,
        cors: list[tuple[str, str]],
    ) -> None:
        """Open a stream and let the adapter hold it until either side ends it."""
        try:
            first = body.decode()
        except UnicodeDecodeError:
            await _answer(send, 400, {"error": "bad_request", "message": "not UTF-8"}, cors)
            return
        connection = StreamConnection(scope, first, send)
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-store"),
            ("x-accel-buffering", "no"),  # nginx: pass each event on at once
            ("x-content-type-options", "nosniff"),
            *cors,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": _raw(headers)})
        self.streams[connection.id] = connection
        watching = asyncio.create_task(_watch(receive_, connection))
        beating = asyncio.create_task(_heartbeat(connection))
        try:
            await connection.write(sse_event(json.dumps({"stream": connection.id}), "stream"))
            await adapter.serve(connection, route)
        except SessionClosed:
            pass
        except Exception:
            log.exception("%s: session failed", adapter.name)
            await connection.close(1011, "internal error")
        else:
            await connection.close()
        finally:
            self.streams.pop(connection.id, None)
            watching.cancel()
            beating.cancel()
            await connection.finish()

    async def _take(
        self, path: str, origin: str, body: bytes, send: Send, cors: list[tuple[str, str]]
    ) -> None:
        """Hand a sent frame to its stream."""
        try:
            sent = json.loads(body)
            stream, frame = sent["stream"], sent["frame"]
            if not isinstance(stream, str) or not isinstance(frame, (dict, str)):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            message = 'expected {"stream": "<id>", "frame": {...}}'
            await _answer(send, 400, {"error": "bad_request", "message": message}, cors)
            return
        connection = self.streams.get(stream)
        if connection is None or connection.closed or connection.path != path:
            await _answer(send, 404, {"error": "unknown_stream"}, cors)
            return
        if origin != connection.origin:
            await _answer(send, 403, {"error": "wrong_origin"}, cors)
            return
        # the frame as the WebSocket would carry it (compact JSON, in the order it came)
        text = frame if isinstance(frame, str) else _compact(frame)
        if not connection.offer(text):
            retry = [*cors, ("retry-after", "1")]
            await _answer(send, 429, {"error": "slow_down"}, retry)
            return
        await _answer(send, 202, {"status": "accepted"}, cors)


_FALLBACKS: weakref.WeakSet[SessionFallback] = weakref.WeakSet()


async def end_streams(reason: str = "the server is restarting") -> None:
    """End every stream this process holds with RESTART, as uvicorn closes its WebSockets
    when it stops: an open response would hold the server's shutdown up for good, and the
    clients reconnect elsewhere and resume."""
    for fallback in list(_FALLBACKS):
        for connection in list(fallback.streams.values()):
            await connection.close(RESTART, reason)


async def _watch(receive_: Receive, connection: StreamConnection) -> None:
    """Wait for the client to go away (its body was read: the next message is the end)."""
    while (await receive_())["type"] != "http.disconnect":
        pass
    connection.lost()


async def _heartbeat(connection: StreamConnection) -> None:
    """A comment every HEARTBEAT_SECONDS until the stream ends."""
    with contextlib.suppress(SessionClosed):
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            await connection.write(b": keep-alive\n\n")


async def _body(scope: MutableMapping[str, Any], receive_: Receive) -> bytes | None:
    """The whole request body, or None past MAX_FRAME_BYTES (cut off without reading on)."""
    length = _header(scope, b"content-length")
    if length.isdigit() and int(length) > MAX_FRAME_BYTES:
        return None
    chunks: list[bytes] = []
    seen = 0
    while True:
        message = await receive_()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        seen += len(chunk)
        if seen > MAX_FRAME_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _cors(adapter: SessionAdapter, origin: str) -> list[tuple[str, str]]:
    """The CORS headers of an answer: the origin echoed only when the adapter allows it."""
    headers = [("vary", "Origin")]
    if origin and adapter.allowed_origin(origin):
        headers.append(("access-control-allow-origin", origin))
    return headers


async def _preflight(send: Send, cors: list[tuple[str, str]]) -> None:
    """A browser's preflight: what a page of an allowed origin may send (403 otherwise)."""
    if not any(name == "access-control-allow-origin" for name, _ in cors):
        await _answer(send, 403, {"error": "wrong_origin"}, cors)
        return
    allowed = [
        *cors,
        ("access-control-allow-methods", "POST"),
        ("access-control-allow-headers", "content-type"),
        ("access-control-max-age", "600"),
    ]
    await send({"type": "http.response.start", "status": 204, "headers": _raw(allowed)})
    await send({"type": "http.response.body", "body": b""})


async def _answer(
    send: Send, status: int, body: dict[str, str], headers: list[tuple[str, str]]
) -> None:
    data = json.dumps(body).encode()
    every = [
        ("content-type", "application/json"),
        ("content-length", str(len(data))),
        ("cache-control", "no-store"),
        *headers,
    ]
    await send({"type": "http.response.start", "status": status, "headers": _raw(every)})
    await send({"type": "http.response.body", "body": data})


def _compact(frame: Any) -> str:
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def _header(scope: MutableMapping[str, Any], name: bytes) -> str:
    """The last value of header ``name`` (lower case), or empty."""
    found = ""
    for key, value in scope["headers"]:
        if key.lower() == name:
            found = value.decode("latin-1")
    return found


def _raw(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]

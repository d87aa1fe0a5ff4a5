"""An HTTP/1.1 load generator: saturation (N requests, C at a time) or a fixed rate.

It runs on the same cores as the system under test, so it should take as little of them as
it can: every request is encoded to bytes before the clock starts, connections are kept
alive, and answers are parsed by httptools (llhttp), a fraction of aiohttp's client's CPU
(docs/design-notes.md#servicesbenchloadpy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools

Request = tuple[str, bytes, dict[str, str]]  # url, body, headers

#: Connections the open-loop generator may hold at once (beyond that, requests queue).
MAX_OPEN = 512


@dataclass
class LoadResult:
    """What came back: per-request latency (s), status counts, wall time."""

    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: int = 0
    started: float = 0.0
    finished: float = 0.0

    def record(self, status: int, latency: float) -> None:
        """Count one answered request."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latencies.append(latency)

    def summary(self) -> dict[str, float | int | dict[str, int]]:
        """Requests per second and latency percentiles in milliseconds."""
        wall = max(self.finished - self.started, 1e-9)
        ordered = sorted(self.latencies)
        return {
            "requests": len(ordered) + self.errors,
            "per_second": round(len(ordered) / wall, 1),
            "p50_ms": round(percentile(ordered, 50) * 1000, 2),
            "p95_ms": round(percentile(ordered, 95) * 1000, 2),
            "p99_ms": round(percentile(ordered, 99) * 1000, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors,
            "seconds": round(wall, 3),
        }


def percentile(ordered: Sequence[float], p: float) -> float:
    """The p-th percentile of sorted values (nearest rank); 0 for none."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Encoded:
    """A request as the bytes to write, and where to."""

    host: str
    port: int
    raw: bytes


def encode(request: Request) -> Encoded:
    """A POST as HTTP/1.1 bytes (keep-alive, Content-Length); ValueError for a non-http URL."""
    url, body, headers = request
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"the load generator speaks plain http only, not {url!r}")
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    lines = [f"POST {target} HTTP/1.1", f"Host: {parts.hostname}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines) + "\r\n\r\n"
    return Encoded(parts.hostname, port, head.encode("latin-1") + body)


class Connection(asyncio.Protocol):
    """One keep-alive connection answering one request at a time."""

    def __init__(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.reusable = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        """Connect to ``host``:``port``."""
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(cls, host, port)
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (asyncio's callback)."""
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        """Feed the parser; a malformed answer fails the request (asyncio's callback)."""
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)
            self.close()

    def on_message_complete(self) -> None:
        """The answer is whole: hand its status to the waiting request (httptools' callback)."""
        self.reusable = self.reusable and self._parser.should_keep_alive()
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        """The peer closed: a request still waiting fails (asyncio's callback)."""
        self.reusable = False
        self._fail(exc or ConnectionResetError("connection closed before the answer"))

    def _fail(self, exc: Exception) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def send(self, raw: bytes) -> int:
        """Write one request and wait for its answer's status."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(raw)
        return await self._waiter

    @property
    def alive(self) -> bool:
        """Whether a request can still be written (the server has not closed it)."""
        return self.reusable and self._transport is not None and not self._transport.is_closing()

    def close(self) -> None:
        """Close the connection."""
        self.reusable = False
        if self._transport is not None:
            self._transport.close()


class Pool:
    """Keep-alive connections to one server, opened as needed, at most ``limit`` at once."""

    def __init__(self, host: str, port: int, limit: int) -> None:
        self.host, self.port = host, port
        self._idle: list[Connection] = []
        self._slots = asyncio.Semaphore(limit)
        self._all: set[Connection] = set()

    async def send(self, raw: bytes) -> int:
        """Send one request on an idle connection (or a new one); return its status."""
        async with self._slots:
            connection = None
            while self._idle and connection is None:
                candidate = self._idle.pop()
                connection = candidate if candidate.alive else None
            if connection is None:
                connection = await Connection.open(self.host, self.port)
                self._all.add(connection)
            try:
                status = await connection.send(raw)
            except BaseException:
                connection.close()
                self._all.discard(connection)
                raise
            if connection.reusable:
                self._idle.append(connection)
            else:
                connection.close()
                self._all.discard(connection)
            return status

    def close(self) -> None:
        """Close every connection."""
        for connection in self._all:
            connection.close()
        self._all.clear()
        self._idle.clear()


def _pools(encoded: Sequence[Encoded], limit: int) -> dict[tuple[str, int], Pool]:
    addresses = {(e.host, e.port) for e in encoded}
    return {address: Pool(*address, limit) for address in addresses}


async def _send(pool: Pool, raw: bytes, result: LoadResult) -> int:
    """Send one request; its status (0: no answer, counted as an error)."""
    start = time.perf_counter()
    try:
        status = await pool.send(raw)
    except (OSError, httptools.HttpParserError):
        result.errors += 1
        return 0
    result.record(status, time.perf_counter() - start)
    return status


async def saturate(
    requests: Sequence[Request],
    concurrency: int,
    progress: Callable[[int], None] | None = None,
    answers: list[int] | None = None,
) -> LoadResult:
    """Send every request, ``concurrency`` in flight at a time, as fast as they are answered;
    ``answers``, when given, gets each request's status at its index (0: no answer), for a
    caller that must know which were accepted."""
    result = LoadResult()
    encoded = [encode(r) for r in requests]
    pools = _pools(encoded, concurrency)
    queue: Iterator[tuple[int, Encoded]] = iter(enumerate(encoded))
    if answers is not None:
        answers[:] = [0] * len(encoded)

    async def worker() -> None:
        for index, request in queue:
            status = await _send(pools[request.host, request.port], request.raw, result)
            if answers is not None:
                answers[index] = status
            if progress:
                progress(1)

    result.started = time.perf_counter()
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        result.finished = time.perf_counter()
        for pool in pools.values():
            pool.close()
    return result


async def at_rate(
    requests: Sequence[Request], per_second: float, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Start one request every 1/``per_second`` s (open loop), whatever the answers take."""
    result = LoadResult()
    encoded = [encode(r) for r in requests]
    pools = _pools(encoded, MAX_OPEN)
    tasks = []
    result.started = start = time.perf_counter()
    try:
        for index, request in enumerate(encoded):
            delay = start + index / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pool = pools[request.host, request.port]
            tasks.append(asyncio.create_task(_send(pool, request.raw, result)))
            if progress:
                progress(1)
        await asyncio.gather(*tasks)
    finally:
        result.finished = time.perf_counter()
        for pool in pools.values():
            pool.close()
    return result

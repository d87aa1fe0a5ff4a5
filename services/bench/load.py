"""An HTTP load generator on aiohttp: saturation (N requests, C at a time) or a fixed rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import aiohttp

Request = tuple[str, bytes, dict[str, str]]  # url, body, headers


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


async def _send(
    session: aiohttp.ClientSession,
    request: Request,
    result: LoadResult,
    on_accept: Callable[[int], None] | None,
    index: int,
) -> None:
    url, body, headers = request
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            result.record(response.status, time.perf_counter() - start)
            if on_accept and response.status < 300:
                on_accept(index)
    except aiohttp.ClientError:
        result.errors += 1


async def saturate(
    requests: Sequence[Request], concurrency: int, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Send every request, ``concurrency`` in flight at a time, as fast as they are answered."""
    result = LoadResult()
    queue = iter(enumerate(requests))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for index, request in queue:
                await _send(session, request, result, None, index)
                if progress:
                    progress(1)

        result.started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.finished = time.perf_counter()
    return result


async def at_rate(
    requests: Sequence[Request], per_second: float, progress: Callable[[int], None] | None = None
) -> LoadResult:
    """Start one request every 1/``per_second`` s (open loop), whatever the answers take."""
    result = LoadResult()
    connector = aiohttp.TCPConnector(limit=512)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        result.started = start = time.perf_counter()
        for index, request in enumerate(requests):
            delay = start + index / per_second - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(session, request, result, None, index)))
            if progress:
                progress(1)
        await asyncio.gather(*tasks)
        result.finished = time.perf_counter()
    return result

"""Watching results arrive: timeline rows in PostgreSQL, routed records on department topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from aiokafka import AIOKafkaConsumer

from schemas.topics import ROUTED
from services.bench.load import percentile


async def wait_timeline(
    conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID], timeout: float
) -> tuple[int, float]:
    """Poll until every event has its timeline row; return (rows found, monotonic time)."""
    deadline = time.monotonic() + timeout
    found = 0
    while time.monotonic() < deadline:
        found = await conn.fetchval(
            "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])", list(event_ids)
        )
        if found >= len(event_ids):
            break
        await asyncio.sleep(0.05)
    return found, time.monotonic()


async def commit_latencies(
    conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]
) -> dict[str, float]:
    """Acceptance (received_at) to timeline commit (projected_at), p50/p95/p99 in ms."""
    rows = await conn.fetch(
        "SELECT extract(epoch FROM projected_at - received_at) AS s FROM timeline"
        " WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    return spread(sorted(float(r["s"]) for r in rows))


def spread(ordered: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 (ms) of sorted seconds."""
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "p95_ms": round(percentile(ordered, 95) * 1000, 1),
        "p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "n": len(ordered),
    }


@dataclass
class RoutedWatch:
    """Consumes every department topic from the beginning and counts primaries per event."""

    bootstrap: str
    primaries: Counter[str] = field(default_factory=Counter)
    copies: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        """Begin consuming in the background."""
        self._consumer = AIOKafkaConsumer(
            *(spec.name for spec in ROUTED.values()),
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=50,
            max_poll_records=5000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    value = json.loads(record.value)
                    if value["routing"].get("copy_of"):
                        self.copies += 1
                        continue
                    event_id = value["event_id"]
                    self.primaries[event_id] += 1
                    self.arrived.setdefault(event_id, now)
                    received = datetime.fromisoformat(value["interaction"]["received_at"])
                    self.latency[event_id] = record.timestamp / 1000 - received.timestamp()

    async def wait(self, event_ids: Sequence[uuid.UUID], timeout: float) -> tuple[int, float]:
        """Wait until every event has a primary record; return (how many, monotonic time)."""
        wanted = [str(e) for e in event_ids]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            have = sum(1 for e in wanted if e in self.primaries)
            if have >= len(wanted):
                return have, max(self.arrived[e] for e in wanted)
            await asyncio.sleep(0.05)
        return sum(1 for e in wanted if e in self.primaries), time.monotonic()

    def latencies(self, event_ids: Sequence[uuid.UUID]) -> dict[str, float]:
        """Acceptance to department topic (producer timestamp), p50/p95/p99 in ms."""
        return spread(sorted(self.latency[str(e)] for e in event_ids if str(e) in self.latency))

    def duplicates(self, event_ids: Sequence[uuid.UUID]) -> int:
        """Primary records beyond the first, over these events."""
        return sum(max(0, self.primaries[str(e)] - 1) for e in event_ids)

    async def stop(self) -> None:
        """Stop consuming."""
        if self._task:
            self._task.cancel()
        if self._consumer:
            await self._consumer.stop()

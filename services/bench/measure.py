"""Watching results arrive: timeline rows in PostgreSQL, routed records on department topics."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer

from schemas.topics import ROUTED
from services.bench.load import percentile
from services.keys.reader import SealedReader

POLL = 0.25
"""Seconds between polls: light, because timings come from the data, not from the polls."""

#: How long the watcher's fetches wait for data (it does not change what is measured).
WATCH_FETCH_WAIT_MS = 500


async def wait_timeline(
    conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID], timeout: float
) -> tuple[int, float, float]:
    """Poll until every event has its timeline row; return (rows found, first and last commit
    as epoch seconds, from the rows' ``projected_at``). Each poll asks only for the events not
    seen yet, so watching costs PostgreSQL little while the system under test works."""
    deadline = time.monotonic() + timeout
    missing = list(event_ids)
    while missing and time.monotonic() < deadline:
        rows = await conn.fetch(
            "SELECT event_id FROM timeline WHERE event_id = ANY($1::uuid[])", missing
        )
        if rows:
            seen = {r["event_id"] for r in rows}
            missing = [e for e in missing if e not in seen]
        if missing:
            await asyncio.sleep(POLL)
    first, last = await conn.fetchrow(
        "SELECT extract(epoch FROM min(projected_at))::float8,"
        " extract(epoch FROM max(projected_at))::float8"
        " FROM timeline WHERE event_id = ANY($1::uuid[])",
        list(event_ids),
    )
    return len(event_ids) - len(missing), first or 0.0, last or 0.0


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


def group_sum(
    groups: Mapping[str, Sequence[int]],
    of: Callable[[psutil.Process], float],
    alone: Collection[str] = (),
) -> dict[str, float]:
    """``of(process)`` summed over each named group of processes, children included
    (PostgreSQL's backends are its postmaster's children) except for the groups named in
    ``alone`` (a parent of the others, which would count them twice); a process that has
    ended counts nothing."""
    sums: dict[str, float] = {}
    for name, pids in groups.items():
        total = 0.0
        for pid in pids:
            try:
                root = psutil.Process(pid)
                family = [root] if name in alone else [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in family:
                try:
                    total += of(proc)
                except psutil.Error:  # a child that ended meanwhile
                    continue
        sums[name] = total
    return sums


def cpu_seconds(
    groups: Mapping[str, Sequence[int]], alone: Collection[str] = ()
) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each named group (see ``group_sum``)."""
    return group_sum(groups, _cpu, alone)


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


#: The fields of ``psutil.cpu_times()`` that add up to the machine's time (guest time is
#: already counted in user time).
_MACHINE_TIME = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def machine_times() -> dict[str, float]:
    """The machine's CPU times so far (all cores, seconds), for ``steal_share``."""
    now = psutil.cpu_times()
    return {name: getattr(now, name, 0.0) for name in _MACHINE_TIME}


def steal_share(before: Mapping[str, float], after: Mapping[str, float]) -> float | None:
    """The share of the machine's CPU time between two ``machine_times`` readings that its
    hypervisor gave to other guests (a virtual machine's cores are then slower than they
    look); None where the system does not report steal time (only Linux does)."""
    if "steal" not in psutil.cpu_times()._fields:
        return None
    total = sum(after.values()) - sum(before.values())
    return round((after["steal"] - before["steal"]) / total, 3) if total > 0 else None


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
    """Consumes every department topic from the beginning and counts primaries per event
    (opening their sealed records with the customers' keys, as a department would)."""

    bootstrap: str
    database_url: str
    primaries: Counter[str] = field(default_factory=Counter)
    copies: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    published: dict[str, float] = field(default_factory=dict)
    _task: asyncio.Task[None] | None = None
    _consumer: AIOKafkaConsumer | None = None
    _pool: asyncpg.Pool | None = None
    _reader: SealedReader = field(default_factory=SealedReader)

    async def start(self) -> None:
        """Begin consuming in the background."""
        self._pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=1)
        self._consumer = AIOKafkaConsumer(
            *(spec.name for spec in ROUTED.values()),
            bootstrap_servers=self.bootstrap,
            group_id=None,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # the figures come from the records' timestamps, not from when this consumer sees
            # them; every waiting fetch costs the broker CPU, more with every partition, so poll
            # slowly (docs/design-notes.md#servicesbenchmeasurepy)
            fetch_max_wait_ms=WATCH_FETCH_WAIT_MS,
            max_poll_records=5000,
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            assert self._pool is not None
            for records in batch.values():
                opened = await self._reader.values(self._pool, records)
                for record, plain in zip(records, opened, strict=True):
                    if plain is None:  # its customer was erased meanwhile
                        continue
                    value = json.loads(plain)
                    if value["routing"].get("copy_of"):
                        self.copies += 1
                        continue
                    event_id = value["event_id"]
                    self.primaries[event_id] += 1
                    self.published.setdefault(event_id, record.timestamp / 1000)
                    received = datetime.fromisoformat(value["interaction"]["received_at"])
                    self.latency[event_id] = record.timestamp / 1000 - received.timestamp()

    async def wait(self, event_ids: Sequence[uuid.UUID], timeout: float) -> tuple[int, float]:
        """Wait until every event has a primary record; return (how many, when the last was
        published as epoch seconds, from the records' timestamps)."""
        wanted = [str(e) for e in event_ids]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(e in self.primaries for e in wanted):
                break
            await asyncio.sleep(POLL)
        times = [self.published[e] for e in wanted if e in self.published]
        return len(times), max(times, default=0.0)

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
        if self._pool is not None:
            await self._pool.close()

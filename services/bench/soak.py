"""The soak (`omnihub bench --soak MINUTES`, issue 28): half the measured capacity through the
channels for a while, to see what a short phase cannot: memory that keeps growing, a p99 that
drifts, events lost or doubled after thousands of batches.

It offers a steady open-loop load through the web process as customers reach it (email
interactions on the API channel, SMS as signed Twilio webhooks), made a second ahead so
that 20 minutes of requests are never held in memory at once, and reports under ``soak``: the
resident memory of every process after a warm-up and at the end, acceptance → timeline commit
per time slice with the last slice's p99 against the first's, every accepted event counted
once, and a verdict against the issue's target (reported, never asserted).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from services.bench import data, measure
from services.bench.load import MAX_OPEN, LoadResult, Pool, encode
from services.bench.run import (
    LOAD_GENERATOR,
    Hub,
    Options,
    api_event_ids,
    api_requests,
    cpu_now,
    cpu_per_event,
    process_groups,
    sms_event_ids,
    twilio_requests,
)

#: The issue's target: over this many minutes, after the warm-up, ...
TARGET_MINUTES = 20.0
#: ... no process of the hub grows by this many percent or more, ...
MEMORY_GROWTH_LIMIT_PCT = 10.0
#: ... and p99 stays flat: the last slice's p99 at most this many times the first's.
FLAT_P99_RATIO = 1.5
#: The warm-up before memory's starting point: 10 % of the soak, at most a minute.
WARM_UP_SHARE, WARM_UP_MAX_S = 0.1, 60.0
#: Slices of a minute when that makes at least ``MIN_SLICES``, else ``MIN_SLICES`` slices.
SLICE_S, MIN_SLICES = 60.0, 10
#: Requests per side of the quick saturation that measures capacity when nothing did.
QUICK_CAPACITY_REQUESTS = 2_000
#: Seconds of requests made at a time, and events made between two turns of the event loop
#: (making a request costs ~50 µs: a piece delays the requests due meanwhile by ~1 ms).
CHUNK_S, PIECE = 1.0, 25
#: Timeline rows read a query when counting and timing the soak's events.
READ_CHUNK = 20_000


def steps(opts: Options) -> int:
    """How many times the soak calls ``say`` (for the progress bar)."""
    if not opts.soak_minutes:
        return 0
    return 3 if needs_quick_capacity(opts) else 2


def needs_quick_capacity(opts: Options) -> bool:
    """No rate given and no end-to-end phase to take one from."""
    return opts.soak_rate is None and opts.latency_only


def warm_up_seconds(seconds: float) -> float:
    """When memory's starting point is taken: 10 % of the soak, at most a minute."""
    return min(WARM_UP_MAX_S, WARM_UP_SHARE * seconds)


def slice_seconds(seconds: float) -> float:
    """Slices of a minute for soaks of ten minutes or more, else a tenth of the soak."""
    return SLICE_S if seconds >= SLICE_S * MIN_SLICES else seconds / MIN_SLICES


def slices(
    points: Iterable[tuple[float, float]], start: float, seconds: float
) -> list[dict[str, Any]]:
    """Acceptance → commit p50/p95/p99 per slice of the soak. ``points`` are (accepted at,
    latency) in epoch seconds and seconds; an event accepted after the last slice (its request
    was due before the end) counts in the last one."""
    width = slice_seconds(seconds)
    count = max(1, math.ceil(seconds / width - 1e-9))
    buckets: list[list[float]] = [[] for _ in range(count)]
    for accepted, latency in points:
        buckets[min(count - 1, max(0, int((accepted - start) // width)))].append(latency)
    return [
        {
            "from_s": round(n * width, 1),
            "to_s": round(min(seconds, (n + 1) * width), 1),
            **measure.spread(sorted(bucket)),
        }
        for n, bucket in enumerate(buckets)
    ]


def p99_trend(sliced: Sequence[Mapping[str, Any]]) -> float | None:
    """The last slice's p99 over the first's (slices with events); None under two."""
    held = [s for s in sliced if s["n"]]
    if len(held) < 2 or not held[0]["p99_ms"]:
        return None
    return round(float(held[-1]["p99_ms"]) / float(held[0]["p99_ms"]), 2)


def growth(start: Mapping[str, float], end: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Each process's resident memory at both ends (MB) and its growth in percent."""
    return {
        name: {
            "start_mb": round(start[name], 1),
            "end_mb": round(end[name], 1),
            "growth_pct": round((end[name] - start[name]) / start[name] * 100, 1)
            if start[name]
            else None,
        }
        for name in start
        if name in end
    }


def verdict(
    minutes: float,
    memory: Mapping[str, Mapping[str, Any]],
    judged: Sequence[str],
    trend: float | None,
    lost: int,
    duplicated: int,
) -> dict[str, Any]:
    """The issue's target, judged on this run: memory of the hub's own processes (``judged``)
    under the limit after the warm-up, p99 flat, nothing lost or doubled, and whether the run
    was as long as the target asks (shorter runs show the direction only)."""
    growths = [memory[name]["growth_pct"] for name in judged if name in memory]
    memory_ok = bool(growths) and all(
        g is not None and g < MEMORY_GROWTH_LIMIT_PCT for g in growths
    )
    flat = trend is not None and trend <= FLAT_P99_RATIO
    exact = lost == 0 and duplicated == 0
    long_enough = minutes >= TARGET_MINUTES
    return {
        "target": (
            f"over {TARGET_MINUTES:g} minutes after the warm-up, memory growth under "
            f"{MEMORY_GROWTH_LIMIT_PCT:g} % and p99 flat"
        ),
        "memory_growth_under_limit": memory_ok,
        "memory_judged_on": list(judged),
        "p99_flat": flat,
        "p99_flat_means": f"the last slice's p99 at most {FLAT_P99_RATIO:g}x the first's",
        "nothing_lost_or_duplicated": exact,
        "as_long_as_the_target": long_enough,
        "met": memory_ok and flat and exact and long_enough,
    }


def rss_mb(groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
    """Resident memory (MB) of each group of processes, children included (PostgreSQL's
    backends are its postmaster's children); a process that has ended counts nothing."""
    rss = measure.group_sum(groups, lambda proc: proc.memory_info().rss)
    return {name: round(total / 2**20, 1) for name, total in rss.items()}


def memory_groups(hub: Hub) -> tuple[dict[str, list[int]], list[str]]:
    """Every process whose memory the soak follows, one entry a process (``processors-1``
    when a component runs several), and the names of the hub's own among them."""
    groups = {
        name: pids
        for name, pids in process_groups(hub.stack, hub.procs).items()
        if name != LOAD_GENERATOR and name not in hub.procs.running
    }
    own = []
    for name, running in hub.procs.running.items():
        for index, proc in enumerate(running):
            label = name if len(running) == 1 else f"{name}-{index}"
            groups[label] = [proc.pid]
            own.append(label)
    return groups, own


@dataclass
class Chunk:
    """A second's worth of requests, as bytes, and the event id each would create."""

    raws: list[bytes] = field(default_factory=list)
    ids: list[uuid.UUID] = field(default_factory=list)
    api: int = 0
    twilio: int = 0


async def make_chunk(hub: Hub, count: int, number: int) -> Chunk:
    """``count`` requests: email interactions on the API channel, SMS as signed Twilio
    webhooks, as a customer's messages reach the hub; a turn of the event loop every
    ``PIECE`` events so the requests already due go out on time."""
    chunk = Chunk()
    seed = hub.opts.seed + 1000 + number * 1000
    for piece, first in enumerate(range(0, count, PIECE)):
        made = data.events(
            min(PIECE, count - first), hub.crowd, seed + piece, f"soak{number}.{piece}"
        )
        sms = [e for e in made if e.channel.value == "sms"]
        mail = [e for e in made if e.channel.value != "sms"]
        webhooks = twilio_requests(hub.api, hub.api, sms)
        posts = api_requests(hub.api, hub.token, mail)
        chunk.raws += [encode(r).raw for r in (*posts, *webhooks)]
        chunk.ids += api_event_ids(hub.caller, mail) + sms_event_ids(webhooks)
        chunk.api += len(posts)
        chunk.twilio += len(webhooks)
        await asyncio.sleep(0)
    return chunk


@dataclass
class Offered:
    """What the soak's load got: answers, and the events whose request got a 2xx."""

    load: LoadResult = field(default_factory=LoadResult)
    accepted: list[uuid.UUID] = field(default_factory=list)
    api: int = 0
    twilio: int = 0


async def offer(hub: Hub, rate: float, seconds: float, started: Callable[[float], None]) -> Offered:
    """``rate`` requests a second for ``seconds`` (open loop: one every 1/rate s whatever the
    answers take), the next second's requests made while this one's go out; ``started`` gets
    the epoch time the first request is due at."""
    total = round(rate * seconds)
    per_chunk = max(1, round(rate * CHUNK_S))
    parts = urlsplit(hub.api)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80, MAX_OPEN)
    offered = Offered()
    chunks: asyncio.Queue[Chunk] = asyncio.Queue(maxsize=2)
    await chunks.put(await make_chunk(hub, min(per_chunk, total), 0))

    async def maker() -> None:
        for number, first in enumerate(range(per_chunk, total, per_chunk), start=1):
            await chunks.put(await make_chunk(hub, min(per_chunk, total - first), number))

    async def next_chunk() -> Chunk:
        getting = asyncio.ensure_future(chunks.get())
        await asyncio.wait({getting, making}, return_when=asyncio.FIRST_COMPLETED)
        if not getting.done():  # the maker ended without making it: its error, if any
            getting.cancel()
            making.result()
            raise RuntimeError("the soak's requests ran out before their time")
        return getting.result()

    async def send(raw: bytes, event_id: uuid.UUID) -> None:
        began = time.perf_counter()
        try:
            status = await pool.send(raw)
        except OSError:
            offered.load.errors += 1
            return
        offered.load.record(status, time.perf_counter() - began)
        if 200 <= status < 300:
            offered.accepted.append(event_id)

    making = asyncio.create_task(maker())
    pending: set[asyncio.Task[None]] = set()
    index = 0
    offered.load.started = start = time.perf_counter()
    started(time.time())
    try:
        while index < total:
            chunk = await next_chunk()
            offered.api += chunk.api
            offered.twilio += chunk.twilio
            for raw, event_id in zip(chunk.raws, chunk.ids, strict=True):
                delay = start + index / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(send(raw, event_id))
                pending.add(task)
                task.add_done_callback(pending.discard)
                index += 1
        await asyncio.gather(*pending)
    finally:
        offered.load.finished = time.perf_counter()
        making.cancel()
        pool.close()
    return offered


async def follow_memory(
    groups: Mapping[str, Sequence[int]], start: float, seconds: float
) -> tuple[dict[str, float], list[dict[str, float]]]:
    """Resident memory at the end of the warm-up and at the end of every slice (the last is
    the soak's end), on wall-clock times counted from ``start`` (epoch seconds)."""
    width = slice_seconds(seconds)
    ends = [min(seconds, (n + 1) * width) for n in range(max(1, math.ceil(seconds / width - 1e-9)))]
    samples: list[tuple[float, dict[str, float]]] = []
    for at in sorted({warm_up_seconds(seconds), *ends}):
        await asyncio.sleep(max(0.0, start + at - time.time()))
        samples.append((at, await asyncio.to_thread(rss_mb, groups)))
    taken = dict(samples)
    return taken[warm_up_seconds(seconds)], [taken[at] for at in ends]


async def read_timeline(
    conn: asyncpg.Connection, ids: Sequence[uuid.UUID], timeout: float
) -> dict[uuid.UUID, tuple[float, float]]:
    """(accepted at, acceptance → commit) in seconds for every event of ``ids`` with a timeline
    row, read a chunk at a time; polls for the missing ones until ``timeout``."""
    found: dict[uuid.UUID, tuple[float, float]] = {}
    missing = list(ids)
    deadline = time.monotonic() + timeout
    while missing:
        for first in range(0, len(missing), READ_CHUNK):
            rows = await conn.fetch(
                "SELECT event_id, extract(epoch FROM received_at)::float8 AS accepted,"
                " extract(epoch FROM projected_at - received_at)::float8 AS latency"
                " FROM timeline WHERE event_id = ANY($1::uuid[])",
                missing[first : first + READ_CHUNK],
            )
            found.update((r["event_id"], (r["accepted"], r["latency"])) for r in rows)
        missing = [e for e in missing if e not in found]
        if not missing or time.monotonic() > deadline:
            break
        await asyncio.sleep(measure.POLL)
    return found


async def capacity(hub: Hub, report: Mapping[str, Any]) -> tuple[float, str]:
    """Events/s the soak takes half of, and where the figure comes from: the end-to-end
    phase of this run, or a quick one when the run skipped it."""
    if "end_to_end_saturation" in report:
        return float(report["end_to_end_saturation"]["events_per_second"]), "end_to_end_saturation"
    quick = dataclasses.replace(  # the same hub (its ``sent`` too): these events are counted
        hub,
        opts=dataclasses.replace(
            hub.opts, ingress_requests=min(hub.opts.ingress_requests, QUICK_CAPACITY_REQUESTS)
        ),
    )
    measured = await quick.end_to_end(hub.opts.seed + 40, "soak-capacity")
    return float(measured["events_per_second"]), "quick_saturation"


async def soak(hub: Hub, report: Mapping[str, Any], say: Callable[[str], None]) -> dict[str, Any]:
    """The soak phase: its report (see the module's docstring)."""
    opts = hub.opts
    seconds = opts.soak_minutes * 60
    out: dict[str, Any] = {"minutes": opts.soak_minutes}
    if opts.soak_rate is not None:
        rate, source = opts.soak_rate, "soak_rate"
        out["capacity"] = {"events_per_second": None, "from": source}
    else:
        if needs_quick_capacity(opts):
            say("soak: measuring capacity (end to end at saturation, short)")
        measured, source = await capacity(hub, report)
        rate = measured / 2
        out["capacity"] = {"events_per_second": round(measured), "from": source}
    say(f"soak: {opts.soak_minutes:g} min at {rate:.0f} events/s")
    groups, own = memory_groups(hub)
    machine, cpu_before = measure.machine_times(), cpu_now(hub.stack, hub.procs)
    following: list[asyncio.Task[tuple[dict[str, float], list[dict[str, float]]]]] = []
    began = 0.0

    def started(at: float) -> None:
        nonlocal began
        began = at
        following.append(asyncio.create_task(follow_memory(groups, at, seconds)))

    try:
        offered = await offer(hub, rate, seconds, started)
    except BaseException:
        for task in following:
            task.cancel()
        raise
    memory_start, memory_by_slice = await following[0]
    hub.procs.check_alive([p for running in hub.procs.running.values() for p in running])

    say("soak: waiting for every accepted event, counting")
    ids = offered.accepted
    wait = max(300.0, seconds)
    routed, _ = await hub.watch.wait(ids, wait)
    rows = await read_timeline(hub.conn, ids, wait)
    if ids:
        cpu = cpu_per_event(cpu_before, cpu_now(hub.stack, hub.procs), len(ids))
    else:
        cpu = {}
    sliced = slices(rows.values(), began, seconds)
    for piece, rss in zip(sliced, memory_by_slice, strict=True):
        piece["rss_mb"] = rss
    memory = growth(memory_start, memory_by_slice[-1])
    trend = p99_trend(sliced)
    lost = len(ids) - min(len(rows), routed)
    duplicated = hub.watch.duplicates(ids)
    out.update(
        {
            "offered_per_second": round(rate, 1),
            "requests": {"api_channel": offered.api, "twilio_signed_webhooks": offered.twilio},
            "ingress": offered.load.summary(),
            "warm_up_s": round(warm_up_seconds(seconds), 1),
            "memory_mb": memory,
            "slice_s": round(slice_seconds(seconds), 1),
            "slices": sliced,
            "p99_trend": trend,
            "cpu_us_per_event": cpu,
            "cpu_steal_share": measure.steal_share(machine, measure.machine_times()),
            "correctness": {
                "accepted": len(ids),
                "not_accepted": offered.load.errors
                + sum(n for status, n in offered.load.statuses.items() if not 200 <= status < 300),
                "lost_from_timeline": len(ids) - len(rows),
                "lost_from_department_topics": len(ids) - routed,
                "duplicated_on_department_topics": duplicated,
            },
            "verdict": verdict(opts.soak_minutes, memory, own, trend, lost, duplicated),
        }
    )
    return out

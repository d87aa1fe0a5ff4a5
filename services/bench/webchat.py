"""Web chat (``webchat`` in the report, issue 30): what one web chat process
(``omnihub run channel webchat``, its own process as the channel is deployed) holds and takes.

- ``connections``: ``Options.webchat_connections`` visitors open a WebSocket each (hello,
  welcome) and stay connected for ``Options.webchat_hold`` seconds, each sending one message
  at a moment of its own in that time (one a minute at the default hold); the process's
  resident memory and file descriptors before and while it holds them, and how many are
  still open at the end;
- ``acks``: with every connection still held, ``SENDERS`` of the visitors send
  ``Options.webchat_messages`` messages in all, each waiting for the ack of its last (the
  ack comes once the broker acknowledged the event and the conversation log numbered it);
  acks/s and the ack's latency, the CPU each process spent a message; processors stopped;
- ``replies``: processors and the dispatcher started, agents' replies queued as the API and
  the console queue them (``services.customers.outbound.queue_message``, here in the bench's
  process: no HTTP hop) at ``Options.webchat_reply_rate`` a second, open loop, to visitors
  picked at random; the time from queueing to the entry frame on the visitor's socket;
- ``correctness``: every acked message in the timeline (read from PostgreSQL) and on its
  department topic (consumed) once; every reply on its visitor's socket and in the
  conversation log once.

The visitors are WebSocket clients in the bench's own process (websockets), on the same
cores as the hub: their CPU is reported with the hub's (``load_generator``).
"""

from __future__ import annotations

import asyncio
import os
import random
import resource
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import asyncpg
import psutil

from schemas import Channel
from services.bench import data, measure, yardstick
from services.bench.load import percentile
from services.bench.run import (
    Options,
    Procs,
    cpu_now,
    cpu_per_event,
    drain,
    preload,
    start_workers,
)
from services.bench.webchat_visitors import ORIGIN, SITE_ID, VISITOR_KEY, Crowd, Visitor, received
from services.bus.producer import Producer
from services.config import Settings
from services.customers.outbound import queue_message
from services.routing.engine import Router
from services.stack.embedded import Stack
from services.stack.ports import wait_for_port
from services.worker.app import ready_file

#: The issue's targets on this machine: sockets one process holds, acks/s one process
#: gives (judged as measured and scaled to the machine's usual speed), reply p99.
TARGET_CONNECTIONS = 5_000
TARGET_PER_SECOND = 2_000
TARGET_REPLY_P99_MS = 100.0
TARGET_REPLY_RATE = 200.0
#: Visitors sending in the acks measurement (the others stay connected, idle).
SENDERS = 400
#: Handshakes in flight while the crowd connects.
OPEN_AT_ONCE = 100
#: Seconds of replies at the offered rate; replies before them warm the path up.
REPLY_SECONDS = 10.0
REPLY_WARM_UP = 20
#: How long replies and messages may take to arrive before they count as lost.
ARRIVAL_TIMEOUT = 60.0
SAY_STEPS = 4
#: The correctness figures that count what was sent (the others must be 0).
COUNTS = ("messages_acked", "messages_refused", "replies_queued")


def steps(opts: Options) -> int:
    """How many times the section calls ``say``."""
    return SAY_STEPS if opts.webchat_connections else 0


def raise_fd_limit() -> int:
    """The soft limit on open files raised to the hard one (a process started from here
    inherits it): each held socket is a descriptor in the web process and one here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_channel(procs: Procs) -> tuple[subprocess.Popen[bytes], int]:
    """``omnihub run channel webchat`` with the bench's site; its limits raised, since all
    the bench's visitors come from one address. Kept in ``procs`` (``webchat``)."""
    import json

    site = {"id": SITE_ID, "name": "Bench", "origins": [ORIGIN]}
    extra = {
        "WEBCHAT_SITES": json.dumps([site]),
        "WEBCHAT_VISITOR_KEY": VISITOR_KEY,
        "WEBCHAT_MESSAGES_BURST": "10000",
        "WEBCHAT_MESSAGES_EVERY": "0.001",
        "WEBCHAT_VISITORS_BURST": "100000",
        "WEBCHAT_VISITORS_EVERY": "0.001",
    }
    return procs.start_channel("webchat", extra, database=True)


async def ready(proc: subprocess.Popen[bytes], port: int, timeout: float = 60) -> None:
    """Wait until the process answers /readyz (its relay reads the sessions topic)."""
    alive = lambda: proc.poll() is None  # noqa: E731
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port, timeout, alive)
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(f"http://127.0.0.1:{port}/readyz") as answer:
                if answer.status == 200:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("the web chat process did not become ready")


def footprint(proc: subprocess.Popen[bytes]) -> dict[str, float]:
    """The process's resident memory (MB) and open file descriptors."""
    found = psutil.Process(proc.pid)
    return {"rss_mb": round(found.memory_info().rss / 2**20, 1), "fds": found.num_fds()}


def _text(rng: random.Random, n: int) -> str:
    _, said = data.TEXTS[rng.randrange(len(data.TEXTS))]
    return f"{said} (ref. {n})"


def _spread(seconds: Sequence[float]) -> dict[str, float]:
    ordered = sorted(seconds)
    return {
        "p50_ms": round(percentile(ordered, 50) * 1000, 1),
        "p99_ms": round(percentile(ordered, 99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1) if ordered else 0.0,
        "n": len(ordered),
    }


class Tally:
    """The messages sent: the acked ones' event ids, the others' answers by code."""

    def __init__(self) -> None:
        self.acked: list[uuid.UUID] = []
        self.refused: dict[str, int] = {}
        self.latencies: list[float] = []

    async def say(self, visitor: Visitor, text: str) -> bool:
        """One message; whether it was acked."""
        client_id, answer, seconds = await visitor.say(text)
        if answer.get("type") == "ack":
            self.acked.append(visitor.event_id(client_id))
            self.latencies.append(seconds)
            return True
        code = str(answer.get("code", "?"))
        self.refused[code] = self.refused.get(code, 0) + 1
        return False


async def hold(
    crowd: Crowd, proc: subprocess.Popen[bytes], seconds: float, seed: int
) -> tuple[dict[str, Any], Tally, dict[Visitor, uuid.UUID]]:
    """Every visitor sends one message at its own moment within ``seconds``; the figures,
    the tally, and each visitor's acked message (its customer is found by it later)."""
    rng = random.Random(seed)
    tally = Tally()
    first: dict[Visitor, uuid.UUID] = {}
    began = time.perf_counter()
    cpu_before = psutil.Process(proc.pid).cpu_times()

    async def one(visitor: Visitor, at: float, n: int) -> None:
        await asyncio.sleep(max(0.0, began + at - time.perf_counter()))
        if await tally.say(visitor, _text(rng, n)):
            first[visitor] = tally.acked[-1]

    moments = [rng.uniform(0, seconds) for _ in crowd.visitors]
    await asyncio.gather(
        *(one(v, at, n) for n, (v, at) in enumerate(zip(crowd.visitors, moments, strict=True)))
    )
    await asyncio.sleep(max(0.0, began + seconds - time.perf_counter()))
    wall = time.perf_counter() - began
    cpu_after = psutil.Process(proc.pid).cpu_times()
    used = cpu_after.user + cpu_after.system - cpu_before.user - cpu_before.system
    figures = {
        "hold_seconds": round(wall, 1),
        "messages": len(crowd.visitors),
        "acked": len(tally.acked),
        "refused": tally.refused,
        "messages_per_second": round(len(crowd.visitors) / wall, 1),
        "ack_latency": _spread(tally.latencies),
        "web_process_cpu_share_of_a_core": round(used / wall, 3),
    }
    return figures, tally, first


async def acks(
    crowd: Crowd, count: int, seed: int, stack: Stack, procs: Procs
) -> tuple[dict[str, Any], Tally]:
    """``count`` messages from ``SENDERS`` visitors, each waiting for its last one's ack."""
    rng = random.Random(seed)
    senders = crowd.visitors[:SENDERS]
    shares = [
        count // len(senders) + (1 if n < count % len(senders) else 0) for n in range(len(senders))
    ]
    tally = Tally()

    async def sender(visitor: Visitor, share: int, base: int) -> None:
        for n in range(share):
            await tally.say(visitor, _text(rng, base + n))

    bases = [sum(shares[:n]) for n in range(len(shares))]
    before = cpu_now(stack, procs)
    began = time.perf_counter()
    await asyncio.gather(*(sender(v, s, b) for v, s, b in zip(senders, shares, bases, strict=True)))
    wall = time.perf_counter() - began
    used = cpu_per_event(before, cpu_now(stack, procs), max(1, count))
    return {
        "senders": len(senders),
        "connections_held": crowd.still_open(),
        "messages": count,
        "acked": len(tally.acked),
        "refused": tally.refused,
        "seconds": round(wall, 2),
        "acks_per_second": round(len(tally.acked) / wall, 1),
        "ack_latency": _spread(tally.latencies),
        "cpu_us_per_message": {k: v for k, v in used.items() if k != "processors"},
    }, tally


async def customers_of(
    conn: asyncpg.Connection, first: dict[Visitor, uuid.UUID]
) -> dict[Visitor, uuid.UUID]:
    """Each visitor's customer, from the timeline row of its first acked message."""
    rows = await conn.fetch(
        "SELECT event_id, customer_id FROM timeline WHERE event_id = ANY($1::uuid[])",
        list(first.values()),
    )
    by_event = {r["event_id"]: r["customer_id"] for r in rows}
    return {v: by_event[e] for v, e in first.items() if e in by_event}


async def replies(
    conn: asyncpg.Connection,
    stack: Stack,
    settings: Settings,
    who: dict[Visitor, uuid.UUID],
    rate: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Agents' replies to visitors at random, ``rate`` a second for ``REPLY_SECONDS`` (a
    few first, one at a time, to warm up); the figures and every reply's queueing time."""
    rng = random.Random(seed)
    visitors = list(who)
    pool = await asyncpg.create_pool(stack.database_url, min_size=2, max_size=8)
    producer = Producer(
        stack.bootstrap,
        linger_ms=settings.publish_linger_ms,
        batch_records=settings.publish_batch_records,
        client_id="bench-agents",
    )
    await producer.start()
    queued: dict[str, float] = {}
    failed: dict[str, int] = {}

    async def reply(visitor: Visitor, n: int) -> None:
        began = time.perf_counter()
        try:
            command = await queue_message(
                pool,
                producer,
                who[visitor],
                channel=Channel.WEBCHAT,
                text=f"Thank you, we are looking into it (reply {n}).",
                requested_by="console:bench-agent",
            )
        except Exception as exc:  # counted, not raised: the figures say what failed
            failed[type(exc).__name__] = failed.get(type(exc).__name__, 0) + 1
            return
        queued[str(command.command_id)] = began

    try:
        for n in range(REPLY_WARM_UP):
            await reply(rng.choice(visitors), n)
        warm = list(queued)
        await arrivals(visitors, warm, ARRIVAL_TIMEOUT)
        count = max(1, round(rate * REPLY_SECONDS))
        tasks = []
        began = time.perf_counter()
        for n in range(count):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(reply(rng.choice(visitors), REPLY_WARM_UP + n)))
        await asyncio.gather(*tasks)
        offered_for = time.perf_counter() - began
        measured = [c for c in queued if c not in warm]
        await arrivals(visitors, measured, ARRIVAL_TIMEOUT)
    finally:
        await producer.stop()
        await pool.close()
    _, first = received(visitors)
    latencies = [first[c] - queued[c] for c in measured if c in first]
    # where the time went: the dispatcher's append to the conversation log (its
    # transaction's start, PostgreSQL's clock) splits it in two
    wall = time.time() - time.perf_counter()
    logged = dict(
        await conn.fetch(
            "SELECT entry_id::text, extract(epoch FROM logged_at)::float8 FROM conversation_log"
            " WHERE adapter = 'webchat' AND entry_id = ANY($1::uuid[])",
            [uuid.UUID(c) for c in measured],
        )
    )
    to_log = [logged[c] - wall - queued[c] for c in measured if c in logged]
    to_socket = [first[c] + wall - logged[c] for c in measured if c in logged and c in first]
    return {
        "offered_per_second": rate,
        "replies": count,
        "queued": len(measured),
        "not_queued": failed,
        "queued_per_second": round(len(measured) / offered_for, 1),
        "warm_up": len(warm),
        "queued_to_visitor_socket": _spread(latencies),
        "queued_to_conversation_log": _spread(to_log),
        "conversation_log_to_visitor_socket": _spread(to_socket),
    }, queued


async def arrivals(visitors: Sequence[Visitor], wanted: Sequence[str], timeout: float) -> None:
    """Wait until every wanted reply reached a socket (or the timeout), then a moment more
    for any second copy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts, _ = received(visitors)
        if all(c in counts for c in wanted):
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)


async def in_timeline(
    conn: asyncpg.Connection, watch: measure.RoutedWatch, ids: Sequence[uuid.UUID], timeout: float
) -> dict[str, int]:
    """Acked messages in the timeline and on their department topics (consumed)."""
    routed, _ = await watch.wait(ids, timeout)
    rows, _, _ = await measure.wait_timeline(conn, ids, timeout)
    return {
        "lost_from_timeline": len(ids) - rows,
        "lost_from_department_topics": len(ids) - routed,
        "duplicated_on_department_topics": watch.duplicates(ids),
    }


async def in_log(conn: asyncpg.Connection, commands: Sequence[str]) -> int:
    """Replies found in the conversation log (its key makes a second copy impossible)."""
    found: int = await conn.fetchval(
        "SELECT count(DISTINCT entry_id) FROM conversation_log"
        " WHERE adapter = 'webchat' AND entry_id = ANY($1::uuid[])",
        [uuid.UUID(c) for c in commands],
    )
    return found


async def start_dispatcher(settings: Settings, procs: Procs) -> None:
    """The dispatcher, once it holds its partitions."""
    proc = procs.start("dispatcher")
    while not ready_file(settings, "omnihub-dispatcher", proc.pid).exists():
        procs.check_alive([proc])
        await asyncio.sleep(0.1)


async def section(
    opts: Options,
    settings: Settings,
    stack: Stack,
    procs: Procs,
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    plain_loop: float | None,
    say: Callable[[str], None],
    backlog: Sequence[uuid.UUID] = (),
) -> dict[str, Any]:
    """The ``webchat`` section (see the module's docstring); processors stopped, then
    ``opts.workers`` left running; the dispatcher stopped at the end."""
    began = time.monotonic()
    fd_limit = raise_fd_limit()
    procs.stop("processors")
    proc, port = start_channel(procs)
    await ready(proc, port)
    crowd = Crowd(f"ws://127.0.0.1:{port}/channels/webchat/ws")
    count = opts.webchat_connections
    try:
        say(f"web chat: opening {count} connections")
        idle = footprint(proc)
        open_seconds = await crowd.open(count, OPEN_AT_ONCE)
        opened = footprint(proc)
        say(f"web chat: holding {len(crowd.visitors)} connections for {opts.webchat_hold:.0f} s")
        held, held_tally, first = await hold(crowd, proc, opts.webchat_hold, opts.seed + 40)
        holding = footprint(proc)
        connections = {
            "offered": count,
            "opened": len(crowd.visitors),
            "failed": dict(crowd.failed),
            "open_seconds": round(open_seconds, 2),
            "handshake_and_welcome": _spread(crowd.handshakes),
            "still_open_after_hold": crowd.still_open(),
            "web_process": {
                "before": idle,
                "opened": opened,
                "after_hold": holding,
                "rss_kb_a_connection": round(
                    (holding["rss_mb"] - idle["rss_mb"]) * 1024 / max(1, len(crowd.visitors)), 1
                ),
                "fd_limit": fd_limit,
            },
            **held,
        }

        say(f"web chat: {opts.webchat_messages} messages from {SENDERS} visitors, acks")
        taken, taken_tally = await acks(crowd, opts.webchat_messages, opts.seed + 41, stack, procs)

        say(f"web chat: replies at {opts.webchat_reply_rate:.0f}/s to visitors' sockets")
        await start_workers(settings, procs, opts.workers)
        await start_dispatcher(settings, procs)
        if backlog:
            await drain(conn, watch, backlog)
        acked = [*held_tally.acked, *taken_tally.acked]
        checked = await in_timeline(conn, watch, acked, 300)
        who = await customers_of(conn, first)
        answered, queued = await replies(
            conn, stack, settings, who, opts.webchat_reply_rate, opts.seed + 42
        )
        counts, _ = received(list(who))
        still_open = crowd.still_open()
        procs.check_alive([proc])
    finally:
        await crowd.close()
        procs.stop("webchat")
        procs.stop("dispatcher")
    logged = await in_log(conn, list(queued))
    rate = taken["acks_per_second"]
    scaled = yardstick.scaled(rate, plain_loop)
    p99 = answered["queued_to_visitor_socket"]["p99_ms"]
    correctness = {
        "messages_acked": len(acked),
        "messages_refused": sum(held_tally.refused.values()) + sum(taken_tally.refused.values()),
        **checked,
        "replies_queued": len(queued),
        "replies_lost_from_sockets": sum(1 for c in queued if c not in counts),
        "replies_duplicated_on_sockets": sum(max(0, counts[c] - 1) for c in queued),
        "replies_missing_from_conversation_log": len(queued) - logged,
    }
    return {
        "section_seconds": round(time.monotonic() - began, 1),
        "connections": connections,
        "acks": taken,
        "replies": {**answered, "connections_held": still_open},
        "correctness": correctness,
        "targets": {
            "connections": TARGET_CONNECTIONS,
            "connections_met": len(crowd.visitors) >= TARGET_CONNECTIONS
            and connections["still_open_after_hold"] >= TARGET_CONNECTIONS,
            "acks_per_second": TARGET_PER_SECOND,
            "plain_aiokafka_loop_events_per_second": round(plain_loop) if plain_loop else None,
            "acks_scaled_to_usual_machine": round(scaled) if scaled is not None else None,
            "acks_met": rate >= TARGET_PER_SECOND,
            "acks_met_scaled": scaled >= TARGET_PER_SECOND if scaled is not None else None,
            "reply_p99_ms": TARGET_REPLY_P99_MS,
            "reply_rate": TARGET_REPLY_RATE,
            "reply_p99_met": p99 < TARGET_REPLY_P99_MS
            and opts.webchat_reply_rate >= TARGET_REPLY_RATE,
            "nothing_lost_or_duplicated": all(
                correctness[k] == 0 for k in correctness if k not in COUNTS
            ),
        },
        "notes": (
            "the visitors are WebSocket clients in the bench's process on the same cores as "
            f"the hub ({os.cpu_count()}): their CPU is the load_generator's"
        ),
    }


async def alone(
    opts: Options,
    settings: Settings,
    stack: Stack,
    procs: Procs,
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``omnihub bench --webchat-only``: the plain aiokafka loop over ``opts.events``
    preloaded events (the yardstick the acks are scaled by), then the section, which
    drains them."""
    say(f"yardstick: {opts.events} events preloaded, plain aiokafka loop")
    crowd = data.people(opts.customers, opts.multi_share, opts.seed)
    events = data.events(opts.events, crowd, opts.seed + 1, "b1")
    await preload(stack.bootstrap, conn, events)
    router = Router.load(settings.routing_rules)
    plain = await yardstick.plain_loop(stack.bootstrap, stack.database_url, opts.events, router)
    backlog = [e.event_id for e in events]
    return {
        "yardstick": {"plain_aiokafka_loop_events_per_second": round(plain)},
        "webchat": await section(opts, settings, stack, procs, conn, watch, plain, say, backlog),
    }

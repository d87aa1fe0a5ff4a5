"""The benchmark's phases, in one run, against the embedded stack or external servers.

1. latency at a fixed offered load on a fresh hub, 2. processors on a backlog (one worker, then
two), 3. the yardstick (plain aiokafka loop and plain asyncpg writes over the same records),
4. ingress per web process (API channel and signed Twilio webhooks), 5. end to end through the
channels at saturation, 6. latency at the same load again, after all that, 7. start-up time,
peak memory, lost and duplicated events, timeline page cost, 8. the embedded broker's memory
and durable storages side by side (services/bench/storage.py), 9. email ingress: one SMTP
process beside a bare aiosmtpd, and through to the timeline (services/bench/email_ingress.py;
``--email-only`` runs it alone), 10. web chat: WebSockets one process holds, acks/s, agents'
replies to the visitors' sockets (services/bench/webchat.py; ``--webchat-only`` runs it
alone), 11. Meta webhooks: single-entry and batched signed requests one Meta process accepts,
none lost or doubled (services/bench/meta_webhooks.py; ``--meta-only`` runs it alone). The
latency and end-to-end phases report the CPU every process spent an event: the embedded
broker's grows with the small batches its partitions hold, which is why latency is
measured twice. With ``--soak``, a soak at half the measured capacity follows phase 6
(services/bench/soak.py).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import asyncpg
import psutil
from twilio.request_validator import RequestValidator

from schemas import Interaction
from schemas.ids import client_event_id_for, event_id_for
from schemas.topics import INTERACTIONS
from services.api.auth import Role, create_token, hash_token
from services.bench import data, measure, storage, yardstick
from services.bench.load import Request, at_rate, saturate
from services.bus.producer import Producer
from services.bus.records import to_record
from services.config import Settings
from services.keys.periods import PeriodKeeper, PeriodKeyring
from services.routing.engine import Router
from services.stack.embedded import Stack, start_stack
from services.stack.ports import free_port, wait_for_port
from services.supervisor import spawn, stop
from services.worker.app import ready_file

TWILIO_TOKEN = "bench_auth_token_0123456789abcdef"  # noqa: S105 - a bench-only secret
TWILIO_ACCOUNT = "AC" + "b" * 32
LOAD_GENERATOR = "load_generator"


@dataclass
class Options:
    """What to run: sizes, loads and phases."""

    events: int = 20_000
    customers: int = 2_000
    multi_share: float = 0.3
    ingress_requests: int = 5_000
    concurrency: int = 64
    latency_rate: float = 500.0
    latency_seconds: float = 10.0
    big_timeline: int = 100_000
    seed: int = 7
    #: Processors workers beside the web process in the latency and end-to-end phases.
    workers: int = 1
    #: Only the latency phase (web process and workers started, nothing run before it).
    latency_only: bool = False
    #: Minutes of the soak (services/bench/soak.py) after the other phases; 0: none.
    soak_minutes: float = 0.0
    #: Events/s the soak offers; None: half the capacity measured end to end.
    soak_rate: float | None = None
    #: The stack as `omnihub up` runs it (durable broker, PostgreSQL with fsync) instead of
    #: the in-memory broker the phases are compared on across rounds.
    durable: bool = False
    #: Messages of each email ingress measurement (services/bench/email_ingress.py); 0: none.
    email_messages: int = 1_000
    #: SMTP client sessions sending at once in the email section (Postfix's default
    #: destination concurrency limit).
    email_connections: int = 20
    #: Only the email section (and the plain loop its per-second target is scaled by).
    email_only: bool = False
    #: WebSockets one web chat process holds (services/bench/webchat.py); 0: no web chat.
    webchat_connections: int = 5_000
    #: Seconds the connections are held, each visitor sending one message meanwhile.
    webchat_hold: float = 60.0
    #: Messages of the web chat acks measurement.
    webchat_messages: int = 20_000
    #: Agents' replies a second offered to the visitors' sockets.
    webchat_reply_rate: float = 200.0
    #: Only the web chat section (and the plain loop its acks are scaled by).
    webchat_only: bool = False
    #: Single-entry Meta webhooks one Meta process is sent (services/bench/meta_webhooks.py);
    #: 0: no Meta section.
    meta_requests: int = 5_000
    #: Batched Meta webhooks, and the entries each carries.
    meta_batched_requests: int = 1_000
    meta_batch: int = 50
    #: Only the Meta section (and the plain loop its targets are scaled by).
    meta_only: bool = False


@dataclass
class Procs:
    """Component processes and their peak memory (sampled)."""

    env: dict[str, str]
    logs: Path
    running: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    peak_mb: dict[str, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self, name: str, extra: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start a component and remember it."""
        index = len(self.running.get(name, []))
        proc = spawn(name, dict(self.env, **(extra or {})), self.logs / f"{name}-{index}.log")
        self.running.setdefault(name, []).append(proc)
        return proc

    def start_channel(
        self, name: str, extra: dict[str, str], database: bool = False
    ) -> tuple[subprocess.Popen[bytes], int]:
        """``omnihub run channel <name>`` as the channel is deployed (Kafka only unless
        ``database``), with ``extra`` settings; its HTTP port. Kept under ``name``."""
        port = free_port()
        env = {k: v for k, v in self.env.items() if database or k != "DATABASE_URL"}
        env.update(extra, OMNIHUB_HTTP_PORT=str(port))
        proc = spawn(f"channel {name}", env, self.logs / f"channel-{name}.log")
        self.running.setdefault(name, []).append(proc)
        return proc, port

    def stop(self, name: str) -> None:
        """Stop every process of a component."""
        for proc in self.running.pop(name, []):
            stop(proc, name, timeout=30)

    def check_alive(self, started: Sequence[subprocess.Popen[bytes]]) -> None:
        """RuntimeError naming the logs if any of ``started`` has exited."""
        if any(proc.poll() is not None for proc in started):
            raise RuntimeError(f"a component exited; see its log in {self.logs}")

    def stop_all(self) -> None:
        """Stop everything and the sampler."""
        self._stop.set()
        for name in list(self.running):
            self.stop(name)

    def sample(self) -> None:
        """Sample the resident memory of every process (with children) until stopped."""

        def loop() -> None:
            while not self._stop.wait(0.25):
                for name, procs in list(self.running.items()):
                    for proc in procs:
                        try:
                            rss = psutil.Process(proc.pid).memory_info().rss
                        except psutil.Error:
                            continue
                        mb = rss / 2**20
                        self.peak_mb[name] = round(max(self.peak_mb.get(name, 0.0), mb), 1)

        threading.Thread(target=loop, daemon=True).start()


def worker_ready(settings: Settings, proc: subprocess.Popen[bytes]) -> bool:
    """True once the worker holds its partitions."""
    return ready_file(settings, "omnihub-processors", proc.pid).exists()


async def preload(bootstrap: str, conn: asyncpg.Connection, events: Sequence[Interaction]) -> float:
    """Put events on the interactions topic, sealed with the period's key as the channels
    publish them; returns producer records/s."""
    producer = Producer(bootstrap, client_id="bench-preload", linger_ms=20, timeout=60)
    await producer.start()
    keyring = PeriodKeyring()
    await PeriodKeeper(keyring, days_kept=7, source="bench").keep(conn, producer.send_all)
    start = time.perf_counter()
    for offset in range(0, len(events), 5000):
        await producer.send_all(
            await keyring.sealed(
                [
                    to_record(INTERACTIONS, e, str(e.event_id), "bench")
                    for e in events[offset : offset + 5000]
                ]
            )
        )
    rate = len(events) / (time.perf_counter() - start)
    await producer.stop()
    return rate


async def drain(
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    ids: Sequence[uuid.UUID],
    timeout: float = 300,
) -> dict[str, Any]:
    """Wait for every event on its department topic and in the timeline; times are epoch
    seconds taken from the data (commit times, record timestamps), not from when we looked.

    The department topics are watched first: a routed record is published only after its
    timeline row is committed, so once every one is seen the timeline is read about once
    instead of polled on the hub's cores while it works
    (docs/design-notes.md#servicesbenchrunpy)."""
    routed, t_routed = await watch.wait(ids, timeout)
    rows, first, last = await measure.wait_timeline(conn, ids, timeout)
    return {"rows": rows, "routed": routed, "first": first, "done": max(last, t_routed)}


async def backlog_phase(
    opts: Options,
    settings: Settings,
    stack: Stack,
    procs: Procs,
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    workers: int,
    tag: str,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """N events preloaded, then ``workers`` processors started: events/s until all done."""
    crowd = data.people(opts.customers, opts.multi_share, opts.seed)
    events = data.events(opts.events, crowd, opts.seed + workers, tag)
    say(f"preloading {len(events)} events")
    produce_rate = await preload(stack.bootstrap, conn, events)
    say(f"starting {workers} processors worker(s)")
    started, machine = time.time(), measure.machine_times()
    new = [procs.start("processors") for _ in range(workers)]
    ids = [e.event_id for e in events]
    # Started once one of them is on its department topic (after its timeline commit): the
    # watcher already reads those topics, where asking PostgreSQL for any of 200 ids took a
    # sequential scan of the growing timeline on the hub's cores
    # (docs/design-notes.md#servicesbenchrunpy).
    probe = [str(e) for e in ids[:: max(1, len(ids) // 200)]]
    all_ready: float | None = None  # when every worker holds partitions (rebalances done)
    while not any(e in watch.primaries for e in probe) or (all_ready is None and workers > 1):
        procs.check_alive(new)
        if all_ready is None and all(worker_ready(settings, p) for p in new):
            all_ready = time.time()
        await asyncio.sleep(0.05)
    result = await drain(conn, watch, ids)
    stolen = measure.steal_share(machine, measure.machine_times())
    seconds = result["done"] - result["first"]
    steady: dict[str, Any] = {}
    if all_ready is not None and workers > 1 and all_ready > result["first"]:
        # a worker joined after the first had started: a rebalance paused both in the window
        after = await conn.fetchval(
            "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])"
            " AND projected_at >= to_timestamp($2)",
            ids,
            all_ready,
        )
        if result["done"] > all_ready and after:
            steady = {
                "events_after_all_workers_joined": after,
                "events_per_second_after_all_joined": round(after / (result["done"] - all_ready)),
            }
    return {
        "workers": workers,
        "events": len(events),
        "preload_records_per_second": round(produce_rate),
        "startup_to_first_event_s": round(result["first"] - started, 2),
        "seconds": round(seconds, 2),
        "events_per_second": round(len(events) / seconds),
        **steady,
        "cpu_steal_share": stolen,
        "lost": len(events) - min(result["rows"], result["routed"]),
        "duplicated_on_department_topics": watch.duplicates(ids),
        "_events": events,
    }


def api_requests(url: str, token: str, events: Sequence[Interaction]) -> list[Request]:
    """POST /v1/interactions requests for events."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    return [(f"{url}/v1/interactions", data.api_body(e), headers) for e in events]


def twilio_requests(url: str, public: str, events: Sequence[Interaction]) -> list[Request]:
    """Signed inbound-SMS webhooks, one per event (signatures computed beforehand)."""
    validator = RequestValidator(TWILIO_TOKEN)
    signed_url = f"{public}/channels/twilio/sms"
    made = []
    for n, event in enumerate(events):
        sid = "SM" + uuid.uuid5(uuid.NAMESPACE_URL, f"{event.event_id}").hex
        phone = next(
            (i.value for i in event.identities if i.type.value == "phone"), f"+3360{n % 10**7:07d}"
        )
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": TWILIO_ACCOUNT,
            "From": phone,
            "To": "+14155551212",
            "Body": event.text or "",
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
            "SmsStatus": "received",
        }
        headers = {
            "content-type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": validator.compute_signature(signed_url, params),
        }
        made.append((f"{url}/channels/twilio/sms", urlencode(params).encode(), headers))
    return made


def api_event_ids(caller: str, events: Sequence[Interaction]) -> list[uuid.UUID]:
    """The event ids the API channel gives the events the bench's token posts."""
    return [client_event_id_for(caller, e.channel.value, e.provider_message_id) for e in events]


def sms_event_ids(requests: Sequence[Request]) -> list[uuid.UUID]:
    """The event ids the Twilio adapter derives from the webhooks' MessageSid."""
    return [
        event_id_for("sms", parse_qs(body.decode())["MessageSid"][0]) for _, body, _ in requests
    ]


#: Items a timeline page asks for: the small customer's whole history, so both customers'
#: pages hold as many items and the figures compare the length of the history alone
#: (docs/design-notes.md#servicesbenchrunpy).
PAGE_ITEMS = 10


async def timeline_cost(
    api: str, token: str, conn: asyncpg.Connection, big: int, rounds: int = 200
) -> dict[str, Any]:
    """Time a timeline page of ``PAGE_ITEMS`` for a customer with that many events and one
    with ``big``: first pages, and for the long history, pages further in by the cursor."""
    import aiohttp

    small_id, big_id = uuid.uuid4(), uuid.uuid4()
    await conn.execute("INSERT INTO customers (id) VALUES ($1), ($2)", small_id, big_id)
    for customer, count in ((small_id, PAGE_ITEMS), (big_id, big)):
        await conn.execute(
            """INSERT INTO timeline (event_id, customer_id, occurred_at, received_at, channel,
                                     direction, kind, body, provider_message_id, interaction)
               SELECT gen_random_uuid(), $1, now() - make_interval(secs => g), now(), 'email',
                      'inbound', 'message', 'bench message ' || g, 'bench-' || g, '{}'::jsonb
               FROM generate_series(1, $2) AS g""",
            customer,
            count,
        )
    await conn.execute("ANALYZE timeline")
    headers = {"authorization": f"Bearer {token}"}
    out: dict[str, Any] = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        for label, customer in ((f"{PAGE_ITEMS}_events", small_id), (f"{big}_events", big_id)):
            times, items = [], set()
            cursor = None
            for n in range(rounds):
                params = {"limit": str(PAGE_ITEMS)}
                if cursor and n % 2:  # alternate first pages and a deeper page
                    params["cursor"] = cursor
                start = time.perf_counter()
                async with session.get(
                    f"{api}/v1/customers/{customer}/timeline", params=params
                ) as response:
                    page = await response.json()
                times.append(time.perf_counter() - start)
                items.add(len(page["items"]))
                cursor = page.get("next_cursor") or cursor
            out[label] = {**measure.spread(sorted(times)), "items_a_page": sorted(items)}
    return out


async def start_workers(settings: Settings, procs: Procs, count: int) -> None:
    """Start ``count`` processors workers and wait until each holds its partitions."""
    workers = [procs.start("processors") for _ in range(count)]
    while not all(worker_ready(settings, w) for w in workers):
        procs.check_alive(workers)
        await asyncio.sleep(0.1)


def process_groups(stack: Stack, procs: Procs) -> dict[str, list[int]]:
    """The pids of every process taking part: embedded servers, components, this one."""
    groups = {
        {"tansu": "broker", "postgres": "database"}.get(child.label, child.label): [child.proc.pid]
        for child in stack.started
        if child.proc is not None
    }
    groups.update({name: [p.pid for p in running] for name, running in procs.running.items()})
    groups[LOAD_GENERATOR] = [os.getpid()]  # the parent of all the others: counted alone
    return groups


def cpu_now(stack: Stack, procs: Procs) -> dict[str, float]:
    """CPU seconds every process taking part has used so far, by group."""
    return measure.cpu_seconds(process_groups(stack, procs), {LOAD_GENERATOR})


def cpu_per_event(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, int]:
    """Microseconds of CPU each group spent an event between two ``cpu_now`` readings."""
    return {
        name: round((used - before.get(name, 0.0)) / count * 1e6) for name, used in after.items()
    }


@dataclass
class Hub:
    """The hub under measurement as ``make up`` runs it (one web process, ``opts.workers``
    workers): its latency and end-to-end phases, each with the CPU every process spent an
    event."""

    opts: Options
    stack: Stack
    procs: Procs
    conn: asyncpg.Connection
    watch: measure.RoutedWatch
    api: str
    token: str
    #: The token's id: the API channel's event ids are the caller's (schemas.ids).
    caller: str
    crowd: list[data.Person]
    #: Every event sent by the measurements so far (for the lost / duplicated count).
    sent: list[uuid.UUID] = field(default_factory=list)

    async def warm_up(self, seed: int) -> None:
        """A few hundred events at the latency phase's rate before the first measurement (lazy
        models, connection pools, caches)."""
        warm = data.events(500, self.crowd, seed, "warm")
        await at_rate(api_requests(self.api, self.token, warm), self.opts.latency_rate)
        ids = api_event_ids(self.caller, warm)
        await drain(self.conn, self.watch, ids)
        self.sent += ids

    async def latency(self, seed: int, tag: str) -> dict[str, Any]:
        """API requests at a fixed rate: acceptance to timeline commit and to department
        topic."""
        opts, conn, watch = self.opts, self.conn, self.watch
        count = int(opts.latency_rate * opts.latency_seconds)
        steady = data.events(count, self.crowd, seed, tag)
        ids = api_event_ids(self.caller, steady)
        before = cpu_now(self.stack, self.procs)
        load = await at_rate(api_requests(self.api, self.token, steady), opts.latency_rate)
        await drain(conn, watch, ids)
        after = cpu_now(self.stack, self.procs)
        self.sent += ids
        return {
            "offered_per_second": opts.latency_rate,
            "workers": opts.workers,
            "ingress": load.summary(),
            "acceptance_to_timeline_commit": await measure.commit_latencies(conn, ids),
            "acceptance_to_department_topic": watch.latencies(ids),
            "cpu_us_per_event": cpu_per_event(before, after, count),
        }

    async def end_to_end(self, seed: int, tag: str) -> dict[str, Any]:
        """API requests and signed Twilio webhooks, half each, as fast as they are answered:
        events/s from the first request to the last event committed and on its topic."""
        opts, api = self.opts, self.api
        events = data.events(opts.ingress_requests, self.crowd, seed, f"{tag}-api")
        sms = twilio_requests(
            api, api, data.events(opts.ingress_requests, self.crowd, seed + 1, f"{tag}-sms")
        )
        started, before = time.time(), cpu_now(self.stack, self.procs)
        loads = await asyncio.gather(
            saturate(api_requests(api, self.token, events), opts.concurrency // 2),
            saturate(sms, opts.concurrency // 2),
        )
        ids = api_event_ids(self.caller, events) + sms_event_ids(sms)
        done = await drain(self.conn, self.watch, ids)
        used = cpu_per_event(before, cpu_now(self.stack, self.procs), len(ids))
        self.sent += ids
        return {
            "events": len(ids),
            "web_processes": 1,
            "workers": opts.workers,
            "events_per_second": round(len(ids) / (done["done"] - started)),
            "ingress": [load.summary() for load in loads],
            "cpu_us_per_event": used,
        }


def steps(opts: Options) -> int:
    """How many times ``run`` calls its ``say`` (for a progress bar)."""
    from services.bench import email_ingress, meta_webhooks, soak, webchat  # build on this

    if opts.email_only:
        return 2 + email_ingress.steps(opts)
    if opts.webchat_only:
        return 2 + webchat.steps(opts)
    if opts.meta_only:
        return 2 + meta_webhooks.steps(opts)
    sections = email_ingress.steps(opts) + webchat.steps(opts) + meta_webhooks.steps(opts)
    email = 0 if opts.latency_only else sections
    return (3 if opts.latency_only else 13) + soak.steps(opts) + email


async def run(opts: Options, say: Callable[[str], None]) -> dict[str, Any]:
    """Every phase; returns the JSON report."""
    base = Settings()
    data_dir = Path(tempfile.mkdtemp(prefix="omnihub-bench-"))
    settings = base.model_copy(update={"data_dir": data_dir})
    say("starting the stack")
    stack = await asyncio.to_thread(start_stack, settings, opts.durable)
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    env = dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        DATABASE_URL=stack.database_url,
        OMNIHUB_DATA_DIR=str(data_dir),
        OMNIHUB_LOG_LEVEL="WARNING",
        OMNIHUB_HTTP_PORT=str(port),
        TWILIO_AUTH_TOKEN=TWILIO_TOKEN,
        TWILIO_ACCOUNT_SID=TWILIO_ACCOUNT,
        TWILIO_FROM_NUMBER="+14155551212",
        OMNIHUB_PUBLIC_URL=api,
        # the web process serves the email channel too: its SMTP server, not measured, on a
        # port of the system's choosing (2525 may be another hub's)
        OMNIHUB_SMTP_PORT="0",
    )
    procs = Procs(env, data_dir)
    procs.sample()
    machine = measure.machine_times()
    report: dict[str, Any] = {
        "machine": {
            "cores": os.cpu_count(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        },
        "stack": "embedded (Tansu + PostgreSQL)" if stack.started else "external",
        "options": {k: v for k, v in vars(opts).items()},
    }
    conn = await asyncpg.connect(stack.database_url)
    watch = measure.RoutedWatch(stack.bootstrap, stack.database_url)
    await watch.start()
    all_events: list[uuid.UUID] = []
    try:
        if opts.email_only:
            from services.bench import email_ingress

            report.update(await email_ingress.alone(opts, settings, stack, procs, conn, watch, say))
            report["peak_memory_mb"] = dict(procs.peak_mb)
            report["machine"]["cpu_steal_share"] = measure.steal_share(
                machine, measure.machine_times()
            )
            return report
        if opts.webchat_only:
            from services.bench import webchat

            report.update(await webchat.alone(opts, settings, stack, procs, conn, watch, say))
            report["peak_memory_mb"] = dict(procs.peak_mb)
            report["machine"]["cpu_steal_share"] = measure.steal_share(
                machine, measure.machine_times()
            )
            return report
        if opts.meta_only:
            from services.bench import meta_webhooks

            report.update(await meta_webhooks.alone(opts, settings, stack, procs, conn, watch, say))
            report["peak_memory_mb"] = dict(procs.peak_mb)
            report["machine"]["cpu_steal_share"] = measure.steal_share(
                machine, measure.machine_times()
            )
            return report
        say(f"web process and {opts.workers} worker(s)")
        procs.start("api")
        await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 60)
        token = await create_token(conn, Role.INTEGRATION, "bench")
        caller = str(
            await conn.fetchval(
                "SELECT id FROM api_tokens WHERE token_hash = $1", hash_token(token)
            )
        )
        crowd = data.people(opts.customers, opts.multi_share, opts.seed + 10)
        await start_workers(settings, procs, opts.workers)
        say(f"latency at {opts.latency_rate:.0f} events/s offered, on a fresh hub")
        hub = Hub(opts, stack, procs, conn, watch, api, token, caller, crowd)
        await hub.warm_up(opts.seed + 16)
        report["latency_at_fixed_load"] = await hub.latency(opts.seed + 15, "lat")
        if not opts.latency_only:
            procs.stop("processors")
            one = await backlog_phase(opts, settings, stack, procs, conn, watch, 1, "b1", say)
            all_events += [e.event_id for e in one.pop("_events")]
            say("yardstick: plain aiokafka loop and asyncpg writes")
            router = Router.load(settings.routing_rules)
            plain = await yardstick.plain_loop(
                stack.bootstrap, stack.database_url, opts.events, router
            )
            writes = await yardstick.plain_writes(
                stack.database_url, data.events(opts.events, data.people(100, 0, 1), 1, "w")
            )
            procs.stop("processors")
            two = await backlog_phase(opts, settings, stack, procs, conn, watch, 2, "b2", say)
            all_events += [e.event_id for e in two.pop("_events")]
            procs.stop("processors")
            report["processors_backlog"] = {
                "one_worker": one,
                "two_workers": two,
                "ratio_to_plain_loop": round(one["events_per_second"] / plain, 3),
            }
            report["yardstick"] = {
                "plain_aiokafka_loop_events_per_second": round(plain),
                "asyncpg_batched_rows_per_second": round(writes),
            }

            say("ingress: one web process, workers stopped")
            api_events = data.events(opts.ingress_requests, crowd, 11, "ia")
            sms_events = data.events(opts.ingress_requests, crowd, 12, "it")
            api_load = await saturate(api_requests(api, token, api_events), opts.concurrency)
            sms_reqs = twilio_requests(api, api, sms_events)
            sms_load = await saturate(sms_reqs, opts.concurrency)
            report["ingress_per_web_process"] = {
                "api_channel": api_load.summary(),
                "twilio_signed_webhooks": sms_load.summary(),
            }
            backlog_ids = api_event_ids(caller, api_events) + sms_event_ids(sms_reqs)
            all_events += backlog_ids

            say(f"{opts.workers} worker(s); end to end at saturation")
            await start_workers(settings, procs, opts.workers)
            await drain(conn, watch, backlog_ids)
            report["end_to_end_saturation"] = await hub.end_to_end(13, "e2e")

            say(f"latency at {opts.latency_rate:.0f} events/s again, after all that load")
            report["latency_after_load"] = await hub.latency(opts.seed + 17, "late")
        if opts.soak_minutes:
            from services.bench import soak

            report["soak"] = await soak.soak(hub, report, say)  # counts its own events
        all_events += hub.sent
        if not opts.latency_only and opts.email_messages:
            from services.bench import email_ingress

            plain_rate = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
            report["email"] = await email_ingress.section(  # counts its own messages
                opts, settings, stack, procs, conn, watch, plain_rate, say
            )
        if not opts.latency_only and opts.webchat_connections:
            from services.bench import webchat

            plain_rate = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
            report["webchat"] = await webchat.section(  # counts its own messages
                opts, settings, stack, procs, conn, watch, plain_rate, say
            )
        if not opts.latency_only and opts.meta_requests:
            from services.bench import meta_webhooks

            plain_rate = report["yardstick"]["plain_aiokafka_loop_events_per_second"]
            report["meta"] = await meta_webhooks.section(  # counts its own entries
                opts, settings, stack, procs, conn, watch, plain_rate, say
            )

        if not opts.latency_only:
            say("timeline page cost: 10 events vs a long history")
            report["timeline_page"] = await timeline_cost(api, token, conn, opts.big_timeline)
            say("broker storage: a memory and a durable Tansu side by side")
            report["broker_storage"] = await storage.compare()  # services/bench/storage.py

        rows = await conn.fetchval(
            "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])", all_events
        )
        routed = sum(1 for e in all_events if str(e) in watch.primaries)
        report["correctness"] = {
            "events_sent": len(all_events),
            "lost_from_timeline": len(all_events) - rows,
            "lost_from_department_topics": len(all_events) - routed,
            "duplicated_on_department_topics": watch.duplicates(all_events),
        }
        report["peak_memory_mb"] = dict(procs.peak_mb)
        report["machine"]["cpu_steal_share"] = measure.steal_share(machine, measure.machine_times())
    finally:
        await watch.stop()
        await conn.close()
        procs.stop_all()
        await asyncio.to_thread(stack.stop)
    return report

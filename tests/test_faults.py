"""Fault injection (issue #28): a real `omnihub up` under steady load while its parts are killed.

Every component process (processors, dispatcher, API) is SIGKILLed three times, PostgreSQL is
frozen for longer than the API's token cache, the broker (durable storage) is SIGKILLed, and
the supervisor brings everything back. Then,
for every event the hub answered 2xx: on the timeline exactly once, and on its department's
topic once (twice only in the window the README names); for every reply: sent to the provider
stand-in once, or twice only where the timeline says the reply may have been sent twice (a
crash between the provider's answer and the dispatcher's record of it; README "Delivery
guarantees").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from schemas.cloudevents import header_map
from schemas.topics import ROUTED
from services.stack.ports import free_port
from tests.channels.twilio import support as tw
from tests.support import ROOT, eventually, opened_values, read_all, unique

pytestmark = [pytest.mark.faults, pytest.mark.timeout(420)]

#: Events offered per second by the load, and the replies sent while the dispatcher is killed.
LOAD_RATE = 15.0
CUSTOMERS = 4
#: The API's token cache (services/api/auth.py CACHE_SECONDS) and a margin past it.
FREEZE_SECONDS = 30.0 + 5.0


@dataclass
class Hub:
    """A running `omnihub up`: its process, URL, servers and tokens."""

    proc: subprocess.Popen[str]
    url: str
    data_dir: Path
    env: dict[str, str]
    bootstrap: str = ""
    database_url: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    #: The last lines `omnihub up` and its components printed (for a failure's message).
    output: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    def keep_output(self, stream: Any) -> None:
        """Read ``stream`` to its end, keeping the last lines."""
        for line in stream:
            self.output.append(line.rstrip())

    def child(self, name: str) -> psutil.Process | None:
        """The running `omnihub run <name>` child of `omnihub up`, if any."""
        for proc in psutil.Process(self.proc.pid).children():
            try:
                if proc.cmdline()[-2:] == ["run", name] and proc.status() != "zombie":
                    return proc
            except psutil.Error:
                continue
        return None

    def ready(self, name: str) -> bool:
        """The component runs and is ready (a worker holds partitions; the API answers)."""
        proc = self.child(name)
        if proc is None:
            return False
        if name == "api":
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        app = {"processors": "omnihub-processors", "dispatcher": "omnihub-dispatcher"}[name]
        return (self.data_dir / "ready" / f"{app}.{proc.pid}").exists()


def _token(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "services.cli", "token", "create", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, twilio_env: dict[str, str]) -> Iterator[Hub]:
    """`omnihub up` on its own embedded servers, the Twilio adapter sending to the stand-in."""
    base = tmp_path_factory.mktemp("faults")
    port = free_port()
    env = {
        k: v for k, v in os.environ.items() if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}
    }
    env.update(twilio_env)
    env.update(
        OMNIHUB_DATA_DIR=str(base / "data"),
        OMNIHUB_HTTP_PORT=str(port),
        OMNIHUB_LOG_LEVEL="WARNING",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "up"],
        env=env,
        cwd=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    hub = Hub(proc, f"http://127.0.0.1:{port}", base / "data", env)
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        while "omnihub is up" not in proc.stdout.readline():
            assert proc.poll() is None and time.monotonic() < deadline, "omnihub up did not start"
        # keep reading what `omnihub up` and its children print: a full pipe would block them
        threading.Thread(target=hub.keep_output, args=(proc.stdout,), daemon=True).start()
        runtime = json.loads((hub.data_dir / "runtime.json").read_text())
        hub.bootstrap = runtime["kafka_bootstrap_servers"]
        hub.database_url = runtime["database_url"]
        hub.tokens["integration"] = _token(
            env, "--role", "integration", "--scope", "interactions:write", "--scope",
            "customers:read", "--channel", "sms",
        )  # fmt: skip
        hub.tokens["agent"] = _token(env, "--role", "agent")
        yield hub
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Load:
    """Interactions offered at a steady rate; what got a 2xx, and what did not."""

    client: httpx.AsyncClient
    phones: list[str]
    accepted: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)

    async def run(self, stop: asyncio.Event) -> None:
        sent = 0
        started = time.monotonic()
        while not stop.is_set():
            body = {
                "channel": "sms",
                "identities": [{"type": "phone", "value": self.phones[sent % len(self.phones)]}],
                "text": unique("fault load"),
                "provider_message_id": unique("SM"),
            }
            sent += 1
            asyncio.get_running_loop().create_task(self._post(body))
            await asyncio.sleep(max(0.0, started + sent / LOAD_RATE - time.monotonic()))

    async def _post(self, body: dict[str, Any]) -> None:
        try:
            answer = await self.client.post("/v1/interactions", json=body, timeout=15)
        except httpx.HTTPError as exc:
            self.answers[type(exc).__name__] += 1
            return
        self.answers[str(answer.status_code)] += 1
        if answer.status_code == 202:
            self.accepted.add(answer.json()["event_id"])


@dataclass
class Replies:
    """Replies queued by an agent while the dispatcher is killed: their texts and commands."""

    agent: httpx.AsyncClient
    customers: dict[str, str]  # phone -> customer id
    queued: dict[str, str] = field(default_factory=dict)  # text -> command id

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            phone, customer = list(self.customers.items())[len(self.queued) % len(self.customers)]
            text = unique("fault reply")
            try:
                answer = await self.agent.post(
                    f"/v1/customers/{customer}/messages",
                    json={"channel": "sms", "text": text, "to": {"type": "phone", "value": phone}},
                    timeout=15,
                )
                if answer.status_code == 202:
                    self.queued[text] = answer.json()["command_id"]
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)


async def _until_ready(hub: Hub, names: list[str], timeout: float = 90) -> None:
    async def not_ready() -> list[str]:
        ready = await asyncio.gather(*(asyncio.to_thread(hub.ready, n) for n in names))
        return [name for name, ok in zip(names, ready, strict=True) if not ok]

    deadline = time.monotonic() + timeout
    while waiting := await not_ready():
        if time.monotonic() > deadline:
            log = "\n".join(hub.output)
            raise AssertionError(f"not ready after {timeout}s: {waiting}; output:\n{log}")
        await asyncio.sleep(0.25)


async def _kill_rounds(hub: Hub, names: list[str], rounds: int = 3) -> dict[str, set[int]]:
    """Kill every named component at once, wait until all are back; ``rounds`` times.

    Returns the pids killed per component (the supervisor started a new process each time).
    """
    killed: dict[str, set[int]] = {name: set() for name in names}
    for _ in range(rounds):
        await _until_ready(hub, names)
        await asyncio.sleep(1.5)  # let the load reach the fresh processes
        for name in names:
            proc = hub.child(name)
            assert proc is not None and proc.pid not in killed[name], name
            proc.send_signal(signal.SIGKILL)
            killed[name].add(proc.pid)
    await _until_ready(hub, names)
    return killed


def _postgres(hub: Hub) -> list[psutil.Process]:
    """Every process of the embedded PostgreSQL (the postmaster and its backends)."""
    found = []
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if proc.name().startswith("postgres"):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def _broker(hub: Hub) -> psutil.Process | None:
    """The embedded Tansu broker of `omnihub up` (durable storage: SeaweedFS beside it)."""
    for proc in psutil.Process(hub.proc.pid).children(recursive=True):
        try:
            if proc.name().startswith("tansu") and proc.status() != "zombie":
                return proc
        except psutil.Error:
            continue
    return None


async def _kill_broker(hub: Hub) -> None:
    """SIGKILL the broker; wait until the supervisor has started another one."""
    broker = _broker(hub)
    assert broker is not None, "no broker process found"
    broker.send_signal(signal.SIGKILL)

    async def restarted() -> bool:
        again = await asyncio.to_thread(_broker, hub)
        return again is not None and again.pid != broker.pid

    await eventually(restarted, timeout=60, interval=0.25)


async def _freeze_postgres(hub: Hub, seconds: float) -> None:
    """Stop every PostgreSQL process (SIGSTOP) for ``seconds``, then let it go on."""
    frozen = _postgres(hub)
    assert frozen, "no PostgreSQL process found"
    for proc in frozen:
        proc.suspend()
    try:
        await asyncio.sleep(seconds)
    finally:
        for proc in frozen:
            try:
                proc.resume()
            except psutil.NoSuchProcess:
                pass


@pytest.fixture
async def clients(hub: Hub) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """An integration client and an agent client of the hub."""
    limits = httpx.Limits(max_connections=32)
    async with (
        httpx.AsyncClient(
            base_url=hub.url,
            headers={"authorization": f"Bearer {hub.tokens['integration']}"},
            limits=limits,
        ) as client,
        httpx.AsyncClient(
            base_url=hub.url, headers={"authorization": f"Bearer {hub.tokens['agent']}"}
        ) as agent,
    ):
        yield client, agent


async def test_nothing_accepted_is_lost_or_doubled_while_parts_are_killed(
    hub: Hub, clients: tuple[httpx.AsyncClient, httpx.AsyncClient], twilio_api: tw.FakeTwilio
) -> None:
    client, agent = clients
    phones = [tw.new_phone() for _ in range(CUSTOMERS)]
    for phone in phones:
        first = await client.post(
            "/v1/interactions",
            json={
                "channel": "sms",
                "identities": [{"type": "phone", "value": phone}],
                "text": "hello",
                "provider_message_id": unique("SM"),
            },
        )
        assert first.status_code == 202, first.text
    customers = {phone: (await tw.customer_of(client, phone))["id"] for phone in phones}
    load = Load(client, phones)
    replies = Replies(agent, customers)
    stop_load, stop_replies = asyncio.Event(), asyncio.Event()
    running = [
        asyncio.create_task(load.run(stop_load)),
        asyncio.create_task(replies.run(stop_replies)),
    ]
    try:
        killed = await _kill_rounds(hub, ["processors", "dispatcher", "api"])
        assert all(len(pids) == 3 for pids in killed.values()), killed
        stop_replies.set()
        await _freeze_postgres(hub, FREEZE_SECONDS)
        await _until_ready(hub, ["processors", "dispatcher", "api"])
        await asyncio.sleep(3)
        await _kill_broker(hub)  # durable storage: what it acknowledged survives
        await _until_ready(hub, ["processors", "dispatcher", "api"])
        await asyncio.sleep(5)
    finally:
        stop_load.set()
        stop_replies.set()
        await asyncio.gather(*running)
    await asyncio.sleep(1)  # the last posts' answers

    # the load went on through it all: most offers were accepted, the rest refused, none hung
    accepted = set(load.accepted)
    print(f"faults: offered {load.answers}, replies {len(replies.queued)}")
    assert len(accepted) > LOAD_RATE * 30, load.answers
    assert replies.queued, "no reply was queued"

    pool = await asyncpg.create_pool(hub.database_url, min_size=1, max_size=2)
    try:

        async def on_timeline() -> dict[str, int]:
            rows = await pool.fetch(
                "SELECT event_id::text AS id, count(*) AS n FROM timeline"
                " WHERE event_id = ANY($1::uuid[]) GROUP BY event_id",
                list(accepted),
            )
            counts = {r["id"]: r["n"] for r in rows}
            return counts if len(counts) == len(accepted) else {}

        counts = await eventually(on_timeline, timeout=90, interval=1)
        assert set(counts.values()) == {1}

        async def sent_once() -> dict[str, int]:
            sent = {text: len(twilio_api.with_body(text)) for text in replies.queued}
            return sent if all(sent.values()) else {}

        try:
            # the dispatcher rejoins its group after the broker's kill (Tansu answers a join
            # after half the session timeout), then works through what waited
            sent = await eventually(sent_once, timeout=150, interval=1)
        except AssertionError:
            missing = [replies.queued[t] for t in replies.queued if not twilio_api.with_body(t)]
            states = await pool.fetch(
                "SELECT command_id::text AS id, state FROM outbound_messages"
                " WHERE command_id = ANY($1::uuid[])",
                missing,
            )
            raise AssertionError(
                f"{len(missing)} of {len(replies.queued)} replies never reached Twilio's"
                f" stand-in; their states: {[(r['id'], r['state']) for r in states]}"
            ) from None
        twice = {text for text, n in sent.items() if n > 1}
        # the named window: each dispatcher kill can interrupt one attempt of a command after
        # the provider took it, and every attempt after that says so
        repeats = len(killed["dispatcher"])
        assert all(n <= 1 + repeats for n in sent.values()), {
            t: n for t, n in sent.items() if n > 1
        }
        if twice:  # only where the timeline owns up to it
            flagged = await pool.fetch(
                "SELECT interaction->'attributes'->>'may_have_been_sent_twice' AS flag"
                " FROM timeline"
                " WHERE command_id = ANY($1::uuid[]) AND direction = 'outbound'",
                [replies.queued[text] for text in twice],
            )
            assert flagged and all(r["flag"] == "true" for r in flagged), twice
    finally:
        await pool.close()

    primaries: Counter[str] = Counter()
    pool = await asyncpg.create_pool(hub.database_url, min_size=1, max_size=1)
    try:
        for spec in ROUTED.values():
            records = await read_all(hub.bootstrap, spec.name)
            for record, value in zip(records, await opened_values(pool, records), strict=True):
                ce_id = header_map(record.headers).get("ce_id", "")
                if ce_id in accepted and json.loads(value or b"{}")["routing"]["copy_of"] is None:
                    primaries[ce_id] += 1
    finally:
        await pool.close()
    assert set(primaries) == accepted, f"{len(accepted - set(primaries))} never routed"
    # A processors crash after the broker acked a batch's routed records and before their
    # decisions were marked published repeats them (same ce_id): the window the README names.
    # Anything else repeated, or repeated often, is a defect.
    doubled = {ce_id: n for ce_id, n in primaries.items() if n != 1}
    print(f"faults: {len(accepted)} accepted, {len(doubled)} routed twice")
    assert set(doubled.values()) <= {2}, doubled
    assert len(doubled) <= len(accepted) // 20, f"{len(doubled)} routed twice"

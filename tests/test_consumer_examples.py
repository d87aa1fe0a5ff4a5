"""The consumer examples in docs/examples really consume a department topic from the real
broker: records published the way the hub publishes them (``to_record`` through the
``Producer``, sealed with the customer's key from PostgreSQL), the example run as a process
with ``--max`` and keys from the real API, its lines naming every event opened, an erased
customer's records reported and skipped, the deletion handled (its keys dropped), and its
group's offsets committed up to the end; a token the API refuses stops it uncommitted."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from schemas import CustomerEvent, Department, Interaction, RoutedEvent, Routing
from schemas.sealing import SEALED_CONTENT_TYPE, Seal, seal, without_content_type
from schemas.topics import CUSTOMERS, ROUTED
from services.api.auth import Role, Scope, create_token
from services.bus.producer import Producer
from services.bus.records import Record, to_record
from services.keys.store import CustomerKey, CustomerKeys, delete_for
from services.stack.embedded import Stack
from services.stack.ports import free_port
from tests.support import ROOT, read_all, unique

EXAMPLES = ROOT / "docs" / "examples"
NODE_EXAMPLE = EXAMPLES / "node"
DEPARTMENT = Department.FINANCE
TOPIC = ROUTED[DEPARTMENT]
#: Where a line's record was: topic[partition]@offset.
WHERE = re.compile(r"(omnihub\.[\w.]+)\[(\d+)\]@(\d+)")
TIMEOUT = 90  # seconds for an example run (a group join on Tansu takes ~3 s)


@dataclass
class Published:
    """What one test published (besides what the session put on the topics before)."""

    customer_id: str  # A: two sealed routed events, then its deletion on both topics
    event_ids: list[str]  # A's primary and its copy
    deletion_id: str
    erased_customer: str  # B: a sealed event, B's key deleted before the example reads it
    erased_id: str
    plain_id: str  # C's routed event as records were before sealing (application/json)
    plain_customer: str
    dropped_customer: str  # D: a sealed event, D's deletion, then a late sealed event
    dropped_ids: list[str]
    key_ids: dict[str, str]  # customer id -> its key id
    expected: int  # records on the two topics the example reads, these included


def routed(customer: uuid.UUID, n: int, copy_of: Department | None = None) -> RoutedEvent:
    interaction = Interaction.create(
        channel="email",
        direction="inbound",
        kind="message",
        identities=[{"type": "email", "value": f"{unique('example')}@example.com"}],
        provider_message_id=unique("example"),
        subject=f"Facture {n}",
        text="Bonjour, ma facture est fausse",
    )
    routing = Routing(
        department=DEPARTMENT,
        rule_id="billing",
        ruleset_version="default/1+000000000000",
        reason="test",
        copy_of=copy_of,
        tags=["billing"],
    )
    return RoutedEvent(
        event_id=interaction.event_id,
        customer_id=customer,
        routed_at=datetime.now(UTC),
        routing=routing,
        interaction=interaction,
    )


def record(event: RoutedEvent, key: CustomerKey | None) -> Record:
    """The event's record on the department topic; sealed under ``key`` as the hub seals."""
    plain = to_record(TOPIC, event, str(event.event_id), "services/processors")
    if key is None:
        return plain
    return replace(
        plain,
        value=seal(key.key, key.key_id, plain.value),
        headers=without_content_type(plain.headers) + Seal("customer", key.key_id).headers(),
    )


def deletion(customer: uuid.UUID) -> tuple[CustomerEvent, Record]:
    event = CustomerEvent(type="customer.deleted", customer_id=customer, reason="test")
    return event, to_record(CUSTOMERS, event, str(event.event_id), "services/privacy")


async def publish(bootstrap: str, pool: asyncpg.Pool) -> Published:
    """A's two events and deletion, B's erased event, C's plain one, D's sealed event, deletion
    and late event, each partition's records in this order."""
    a, b, c, d = (uuid.uuid4() for _ in range(4))
    async with pool.acquire() as conn:
        await conn.executemany("INSERT INTO customers (id) VALUES ($1)", [(a,), (b,), (d,)])
    keys = await CustomerKeys().for_customers(pool, [a, b, d])
    a_events = [routed(a, 0), routed(a, 1, copy_of=Department.SALES)]
    b_event, c_event, d_event, d_late = routed(b, 2), routed(c, 3), routed(d, 4), routed(d, 5)
    a_deletion, a_tombstone = deletion(a)
    d_deletion, d_tombstone = deletion(d)
    batches = [
        [
            *(record(e, keys[a]) for e in a_events),
            record(b_event, keys[b]),
            record(c_event, None),
            record(d_event, keys[d]),
        ],
        # as the hub erases: the tombstone on the customers topic and on the department's
        [a_tombstone, replace(a_tombstone, topic=TOPIC.name)],
        # D's only on the department's, behind its first event: the example reads the
        # deletion after opening that event and before the late one, whatever the topics' order
        [replace(d_tombstone, topic=TOPIC.name)],
        [record(d_late, keys[d])],
    ]
    producer = Producer(bootstrap, client_id=unique("example-producer"))
    await producer.start()
    try:
        for batch in batches:  # one at a time: each acknowledged before the next
            await producer.send_all(batch)
    finally:
        await producer.stop()
    async with pool.acquire() as conn:
        assert await delete_for(conn, [b]) == 1
    # a new group starts at the beginning: it reads whatever else the session put there too
    expected = sum([len(await read_all(bootstrap, t.name)) for t in (TOPIC, CUSTOMERS)])
    return Published(
        customer_id=str(a),
        event_ids=[str(e.event_id) for e in a_events],
        deletion_id=str(a_deletion.event_id),
        erased_customer=str(b),
        erased_id=str(b_event.event_id),
        plain_id=str(c_event.event_id),
        plain_customer=str(c),
        dropped_customer=str(d),
        dropped_ids=[str(d_event.event_id), str(d_deletion.event_id), str(d_late.event_id)],
        key_ids={str(customer): key.key_id for customer, key in keys.items()},
        expected=expected,
    )


@dataclass
class KeysProxy:
    """The hub's API as the examples see it: the first request for each key is answered 503
    (the example must try again), the others go to the real API. What each key got is
    recorded; a key in ``erase`` is deleted from PostgreSQL once it has been served, as if its
    customer were erased just after the example fetched it."""

    api_url: str
    pool: asyncpg.Pool
    erase: dict[str, uuid.UUID] = field(default_factory=dict)
    answers: dict[str, list[int]] = field(default_factory=dict)

    async def handle(self, request: web.Request) -> web.Response:
        key_id = request.match_info["key_id"]
        answers = self.answers.setdefault(key_id, [])
        if not answers:
            answers.append(503)
            return web.Response(status=503, text="try again")
        async with httpx.AsyncClient(timeout=10) as http:
            upstream = await http.get(
                f"{self.api_url}/v1/keys/{key_id}",
                headers={"authorization": request.headers.get("authorization", "")},
            )
        answers.append(upstream.status_code)
        customer = self.erase.get(key_id)
        if upstream.status_code == 200 and customer is not None:
            async with self.pool.acquire() as conn:
                await delete_for(conn, [customer])
        return web.Response(
            status=upstream.status_code, body=upstream.content, content_type="application/json"
        )


@pytest.fixture
async def proxy(api_url: str, pool: asyncpg.Pool) -> AsyncIterator[tuple[KeysProxy, str]]:
    """A KeysProxy in front of the real API, and its URL."""
    keys = KeysProxy(api_url, pool)
    app = web.Application()
    app.router.add_get("/v1/keys/{key_id}", keys.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield keys, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def token(pool: asyncpg.Pool, scope: Scope) -> str:
    """An integration token holding ``scope`` alone."""
    async with pool.acquire() as conn:
        return await create_token(conn, Role.INTEGRATION, unique("example"), scopes={scope})


def committed(bootstrap: str, group: str) -> dict[tuple[str, int], int]:
    """The group's committed offset of every partition of the two topics that has one."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [
            TopicPartition(spec.name, p)
            for spec in (TOPIC, CUSTOMERS)
            for p in range(spec.partitions)
        ]
        found = consumer.committed(partitions, timeout=20)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in found if tp.offset >= 0}


def committed_after_processing(bootstrap: str, group: str, lines: list[str]) -> None:
    """The group's committed offset of every partition is the one after the last record the
    example printed from it (none where it printed none)."""
    read: dict[tuple[str, int], int] = {}
    for line in lines:
        where = WHERE.search(line)
        assert where is not None, line
        at = (where[1], int(where[2]))
        read[at] = max(read.get(at, -1), int(where[3]))
    assert committed(bootstrap, group) == {at: last + 1 for at, last in read.items()}


async def run_example(command: list[str], returncode: int = 0) -> tuple[list[str], str]:
    """Run an example to its end: its stdout lines and its stderr."""
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT
    )
    assert done.returncode == returncode, f"{command[:2]} exited {done.returncode}:\n{done.stderr}"
    return done.stdout.splitlines(), done.stderr


def the_line(lines: list[str], ce_id: str, start: str) -> str:
    """The one line about ``ce_id`` that starts with ``start``."""
    found = [x for x in lines if f"ce_id={ce_id}" in x and x.startswith(start)]
    assert len(found) == 1, (ce_id, start, [x for x in lines if f"ce_id={ce_id}" in x])
    return found[0]


def check_lines(lines: list[str], published: Published, answers: dict[str, list[int]]) -> None:
    assert len(lines) == published.expected, lines
    for n, event_id in enumerate(published.event_ids):  # opened: the sealed subject is read
        (line,) = [line for line in lines if f"ce_id={event_id}" in line]
        assert line.startswith(f"routed ce_id={event_id} customer={published.customer_id} ")
        assert "department=finance" in line and f'text="Facture {n}"' in line
        assert "ce_source=services/processors" in line
    (primary, copy) = [the_line(lines, e, "routed ") for e in published.event_ids]
    assert "copy_of=-" in primary and "copy_of=sales" in copy
    # the tombstone comes on both topics with one ce_id: handled once, the other a duplicate
    deleted = the_line(lines, published.deletion_id, "customer.deleted ")
    assert deleted.startswith(f"customer.deleted ce_id={published.deletion_id} ")
    assert f"customer={published.customer_id}" in deleted and "forgot" in deleted
    the_line(lines, published.deletion_id, "duplicate ")
    # B's key was deleted: reported with its ce_id and where it was, not opened
    key_of = published.key_ids
    (erased,) = [line for line in lines if f"ce_id={published.erased_id}" in line]
    assert erased.startswith(f"erased ce_id={published.erased_id} "), erased
    assert f"key_id={key_of[published.erased_customer]}" in erased and WHERE.search(erased)
    # an unsealed record reads as ever
    plain = the_line(lines, published.plain_id, "routed ")
    assert f"customer={published.plain_customer}" in plain and 'text="Facture 3"' in plain
    # D: opened, then deleted (its key dropped), then its late record does not open
    first, dropped, late = published.dropped_ids
    assert the_line(lines, first, "routed ")
    dropped_line = the_line(lines, dropped, "customer.deleted ")
    assert f"customer={published.dropped_customer}" in dropped_line
    assert "forgot 1 event(s), 1 key(s)" in dropped_line
    assert the_line(lines, late, "erased ")
    # every key fetched again after a 503; A's once, or again after its deletion
    assert answers[key_of[published.erased_customer]] == [503, 404]
    assert answers[key_of[published.dropped_customer]] == [503, 200, 404]
    a_answers = answers[key_of[published.customer_id]]
    assert a_answers[0] == 503 and a_answers[1:] and set(a_answers[1:]) == {200}


async def consumes_a_department_topic(
    stack: Stack, pool: asyncpg.Pool, proxy: tuple[KeysProxy, str], program: list[str], prefix: str
) -> None:
    """Run an example (``program``: interpreter and script) with a keys:read token and the API
    behind ``proxy``: it prints each record once, opened or reported erased, and commits only
    what it has processed, to the end."""
    keys, api = proxy
    published = await publish(stack.bootstrap, pool)
    keys.erase[published.key_ids[published.dropped_customer]] = uuid.UUID(
        published.dropped_customer
    )
    group = unique(prefix)
    lines, _stderr = await run_example(
        [
            *example_args(program, stack, group, api, await token(pool, Scope.KEYS_READ)),
            *("--max", str(published.expected)),
        ]
    )
    check_lines(lines, published, keys.answers)
    await asyncio.to_thread(committed_after_processing, stack.bootstrap, group, lines)


def example_args(
    program: list[str], stack: Stack, group: str, api: str, key_token: str
) -> list[str]:
    """An example's command line: this department's topic in ``group``, keys from ``api``."""
    return [
        *program,
        *("--bootstrap", stack.bootstrap, "--department", DEPARTMENT.value, "--group", group),
        *("--api-url", api, "--token", key_token),
    ]


async def stops_on_a_refused_token(
    stack: Stack, pool: asyncpg.Pool, api_url: str, program: list[str], prefix: str
) -> None:
    """A token without keys:read gets 403: the example stops with an error at the first sealed
    record, and no partition is committed past a sealed record."""
    await publish(stack.bootstrap, pool)
    group = unique(prefix)
    lines, stderr = await run_example(
        example_args(program, stack, group, api_url, await token(pool, Scope.CUSTOMERS_READ)),
        returncode=1,
    )
    assert "403" in stderr, stderr
    sealed = [
        r
        for t in (TOPIC, CUSTOMERS)
        for r in await read_all(stack.bootstrap, t.name)
        if ("content-type", SEALED_CONTENT_TYPE.encode()) in r.headers
    ]
    assert sealed
    offsets = await asyncio.to_thread(committed, stack.bootstrap, group)
    for r in sealed:
        assert offsets.get((r.topic, r.partition), 0) <= r.offset, (r.topic, r.partition)
        ce_id = dict(r.headers)["ce_id"].decode()
        assert not [line for line in lines if f"ce_id={ce_id}" in line]


async def test_python_example_consumes_a_department_topic(
    stack: Stack, pool: asyncpg.Pool, proxy: tuple[KeysProxy, str]
) -> None:
    script = str(EXAMPLES / "consume_department.py")
    await consumes_a_department_topic(stack, pool, proxy, [sys.executable, script], "example-py")


async def test_python_example_stops_on_a_refused_token(
    stack: Stack, pool: asyncpg.Pool, api_url: str
) -> None:
    script = str(EXAMPLES / "consume_department.py")
    await stops_on_a_refused_token(stack, pool, api_url, [sys.executable, script], "example-py")


@pytest.fixture(scope="module")
def node() -> str:
    """node, with the example's kafkajs installed from its package-lock.json."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node.js example cannot run")
    if not (NODE_EXAMPLE / "node_modules" / "kafkajs" / "package.json").exists():
        npm = shutil.which("npm")
        assert npm is not None, "node is installed without npm: cannot install kafkajs"
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=NODE_EXAMPLE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return node


async def test_node_example_consumes_a_department_topic(
    stack: Stack, pool: asyncpg.Pool, proxy: tuple[KeysProxy, str], node: str
) -> None:
    script = str(NODE_EXAMPLE / "consume_department.mjs")
    await consumes_a_department_topic(stack, pool, proxy, [node, script], "example-node")


async def test_node_example_stops_on_a_refused_token(
    stack: Stack, pool: asyncpg.Pool, api_url: str, node: str
) -> None:
    script = str(NODE_EXAMPLE / "consume_department.mjs")
    await stops_on_a_refused_token(stack, pool, api_url, [node, script], "example-node")

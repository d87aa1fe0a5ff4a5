"""The consumer examples in docs/examples really consume a department topic from the real
broker: records published the way the hub publishes them (``to_record`` through the
``Producer``), the example run as a process with ``--max``, its lines naming every event,
the deletion handled, and its group's offsets committed up to the end."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer, TopicPartition

from schemas import CustomerEvent, Department, Interaction, RoutedEvent, Routing
from schemas.topics import CUSTOMERS, ROUTED
from services.bus.producer import Producer
from services.bus.records import to_record
from services.stack.embedded import Stack
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
    event_ids: list[str]
    customer_id: str
    deletion_id: str
    expected: int  # records on the two topics the example reads, these included


async def publish(bootstrap: str) -> Published:
    """Two routed events (a primary and a copy) for one customer, then its deletion."""
    customer = uuid.uuid4()
    now = datetime.now(UTC)
    events = []
    for n in range(2):
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
            copy_of=None if n == 0 else Department.SALES,
            tags=["billing"],
        )
        events.append(
            RoutedEvent(
                event_id=interaction.event_id,
                customer_id=customer,
                routed_at=now,
                routing=routing,
                interaction=interaction,
            )
        )
    deletion = CustomerEvent(type="customer.deleted", customer_id=customer, reason="test")
    records = [to_record(TOPIC, e, str(e.event_id), "services/processors") for e in events]
    records.append(to_record(CUSTOMERS, deletion, str(deletion.event_id), "services/privacy"))
    producer = Producer(bootstrap, client_id=unique("example-producer"))
    await producer.start()
    try:
        await producer.send_all(records)
    finally:
        await producer.stop()
    # a new group starts at the beginning: it reads whatever else the session put there too
    expected = sum([len(await read_all(bootstrap, t.name)) for t in (TOPIC, CUSTOMERS)])
    return Published(
        event_ids=[str(e.event_id) for e in events],
        customer_id=str(customer),
        deletion_id=str(deletion.event_id),
        expected=expected,
    )


def committed_after_processing(bootstrap: str, group: str, lines: list[str]) -> None:
    """The group's committed offset of every partition is the one after the last record the
    example printed from it (none where it printed none)."""
    read: dict[tuple[str, int], int] = {}
    for line in lines:
        where = WHERE.search(line)
        assert where is not None, line
        at = (where[1], int(where[2]))
        read[at] = max(read.get(at, -1), int(where[3]))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = [
            TopicPartition(spec.name, p)
            for spec in (TOPIC, CUSTOMERS)
            for p in range(spec.partitions)
        ]
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=20)
        }
    finally:
        consumer.close()
    assert {at: offset for at, offset in committed.items() if offset >= 0} == {
        at: last + 1 for at, last in read.items()
    }


async def run_example(command: list[str]) -> list[str]:
    """Run an example to its end; its stdout lines (stderr shown when it fails)."""
    done = await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT
    )
    assert done.returncode == 0, f"{command[:2]} exited {done.returncode}:\n{done.stderr}"
    return done.stdout.splitlines()


def check_lines(lines: list[str], published: Published) -> None:
    assert len(lines) == published.expected, lines
    for event_id in published.event_ids:
        (line,) = [line for line in lines if f"ce_id={event_id}" in line]
        assert line.startswith("routed ")
        assert f"customer={published.customer_id}" in line
        assert "department=finance" in line
        assert "ce_source=services/processors" in line
    (primary, copy) = [next(x for x in lines if f"ce_id={e}" in x) for e in published.event_ids]
    assert "copy_of=-" in primary and "copy_of=sales" in copy
    (deleted,) = [line for line in lines if f"ce_id={published.deletion_id}" in line]
    assert deleted.startswith(f"customer.deleted ce_id={published.deletion_id} ")
    assert f"customer={published.customer_id}" in deleted and "forgot" in deleted


async def consumes_a_department_topic(stack: Stack, program: list[str], prefix: str) -> None:
    """Run an example (``program``: interpreter and script) against two routed events and a
    deletion: it prints each once and commits only what it has processed."""
    published = await publish(stack.bootstrap)
    group = unique(prefix)
    lines = await run_example(
        [
            *program,
            "--bootstrap",
            stack.bootstrap,
            "--department",
            DEPARTMENT.value,
            "--group",
            group,
            "--max",
            str(published.expected),
        ]
    )
    check_lines(lines, published)
    await asyncio.to_thread(committed_after_processing, stack.bootstrap, group, lines)


async def test_python_example_consumes_a_department_topic(stack: Stack) -> None:
    script = str(EXAMPLES / "consume_department.py")
    await consumes_a_department_topic(stack, [sys.executable, script], "example-py")


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


async def test_node_example_consumes_a_department_topic(stack: Stack, node: str) -> None:
    script = str(NODE_EXAMPLE / "consume_department.mjs")
    await consumes_a_department_topic(stack, [node, script], "example-node")

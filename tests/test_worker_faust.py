"""What ``services.worker`` changes in faust still fits the faust installed.

The worker's transport (``services/worker/transport.py``) subclasses faust's aiokafka driver
and overrides private methods, reads private attributes of faust's consumer, and sets private
attributes of aiokafka's consumer. None of that is an API: an upgrade may rename, re-sign or
stop calling any of it, and a worker would then run faust's behaviour (or crash) with nothing
saying why. These tests fail first: the versions installed are the ones the adjustments were
checked against, and every private name they rely on is still there, with the signature they
expect, and still called where they expect it to be.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import faust
import pytest
from faust.transport import base as transport_base
from faust.transport import consumer as faust_consumer
from faust.transport.drivers import aiokafka as driver

from services.config import Settings
from services.worker import AIOKAFKA_CHECKED, FAUST_CHECKED, transport
from services.worker.app import faust_app

ROOT = Path(__file__).resolve().parent.parent


def params(function: Callable[..., Any]) -> list[tuple[str, str]]:
    """A function's parameters as (name, kind), without annotations (their spelling is not
    what an override depends on)."""
    return [(p.name, p.kind.name) for p in inspect.signature(function).parameters.values()]


def source(function: Callable[..., Any]) -> str:
    return inspect.getsource(function)


POSITIONAL = "POSITIONAL_OR_KEYWORD"

#: Every faust method ``services.worker.transport`` overrides: (class, name, parameters).
OVERRIDDEN: list[tuple[type, str, list[tuple[str, str]]]] = [
    (
        driver.AIOKafkaConsumerThread,
        "_create_worker_consumer",
        [("self", POSITIONAL), ("transport", POSITIONAL)],
    ),
    (driver.Consumer, "_new_consumer_thread", [("self", POSITIONAL)]),
    (driver.Consumer, "on_buffer_drop", [("self", POSITIONAL), ("tp", POSITIONAL)]),
    (driver.Consumer, "_wait_next_records", [("self", POSITIONAL), ("timeout", POSITIONAL)]),
    (driver.Consumer, "_drain_messages", [("self", POSITIONAL), ("fetcher", POSITIONAL)]),
    (faust.App, "_new_transport", [("self", POSITIONAL)]),
]

#: Private faust methods the adjustments call: (class, name, parameters).
CALLED: list[tuple[type, str, list[tuple[str, str]]]] = [
    (driver.Consumer, "_get_active_partitions", [("self", POSITIONAL)]),
    (
        driver.Consumer,
        "_add_gap",
        [
            ("self", POSITIONAL),
            ("tp", POSITIONAL),
            ("offset_from", POSITIONAL),
            ("offset_to", POSITIONAL),
        ],
    ),
    (driver.Consumer, "getmany", [("self", POSITIONAL), ("timeout", POSITIONAL)]),
    (
        faust_consumer.ConsumerThread,
        "__init__",
        [("self", POSITIONAL), ("consumer", POSITIONAL), ("kwargs", "VAR_KEYWORD")],
    ),
]

#: Where faust calls what is overridden (the override is dead code if faust stops calling it).
CALLERS: list[tuple[Callable[..., Any], str]] = [
    (driver.AIOKafkaConsumerThread._create_consumer, "self._create_worker_consumer(transport)"),
    (faust_consumer.ThreadDelegateConsumer.__init__, "self._new_consumer_thread()"),
    (faust_consumer.Consumer.getmany, "await self._wait_next_records(timeout)"),
    (faust_consumer.Fetcher._fetcher.fun, "consumer._drain_messages(self)"),  # a mode task
    (faust.App.__dict__["transport"].fget, "self._new_transport()"),
    (transport_base.Transport.create_consumer, "self.Consumer("),
]

#: Private attributes of faust's consumer the adjustments read (or write: ``_n_acked``).
CONSUMER_ATTRIBUTES = (
    "_buffered_partitions",
    "_read_offset",
    "_committed_offset",
    "_commit_every",
    "_n_acked",
    "_stopped",
    "flow_active",
    "suspend_flow",
    "diag",
    "callback",
    "consumer_stopped_errors",
)


def test_faust_and_aiokafka_are_the_versions_the_adjustments_were_checked_against() -> None:
    """An upgrade lands here first: read ``services/worker/transport.py`` against the new
    faust (and aiokafka), then move ``FAUST_CHECKED`` / ``AIOKAFKA_CHECKED``."""
    assert version("faust-streaming") == FAUST_CHECKED
    assert version("aiokafka") == AIOKAFKA_CHECKED
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    assert f"faust-streaming=={FAUST_CHECKED}" in constraints
    assert f"aiokafka=={AIOKAFKA_CHECKED}" in constraints


@pytest.mark.parametrize(
    ("cls", "name", "expected"), OVERRIDDEN, ids=[f"{c.__name__}.{n}" for c, n, _ in OVERRIDDEN]
)
def test_every_overridden_faust_method_still_exists_with_its_signature(
    cls: type, name: str, expected: list[tuple[str, str]]
) -> None:
    assert name in dir(cls), f"faust's {cls.__qualname__} has no {name} any more"
    assert params(getattr(cls, name)) == expected


def test_every_override_takes_what_faust_passes_and_nothing_else_shadows_faust() -> None:
    """The overrides take the parameters faust's methods take; what the subclasses add
    (``Consumer._drained``, ``_deliver`` ...) is not a name faust uses (a faust upgrade that
    adds one fails here)."""
    ours: list[tuple[type, type]] = [
        (transport.ConsumerThread, driver.AIOKafkaConsumerThread),
        (transport.Consumer, driver.Consumer),
        (transport.App, faust.App),
    ]
    known = {(cls, name) for cls, name, _ in OVERRIDDEN}
    made_by_the_class_statement = {"logger", "_abc_impl"}  # mode's and abc's, every subclass
    overridden = []
    for cls, base in ours:
        for name, member in vars(cls).items():
            if name.startswith("__") or name in made_by_the_class_statement:
                continue
            if not hasattr(base, name):
                continue
            overridden.append(name)
            assert (base, name) in known, f"{cls.__name__}.{name} shadows faust's"
            assert params(member) == params(getattr(base, name)), f"{cls.__name__}.{name}"
    assert sorted(overridden) == sorted(name for _, name, _ in OVERRIDDEN)


@pytest.mark.parametrize(
    ("cls", "name", "expected"), CALLED, ids=[f"{c.__name__}.{n}" for c, n, _ in CALLED]
)
def test_every_private_faust_method_called_still_exists_with_its_signature(
    cls: type, name: str, expected: list[tuple[str, str]]
) -> None:
    assert params(getattr(cls, name)) == expected


@pytest.mark.parametrize(("caller", "call"), CALLERS, ids=[c for _, c in CALLERS])
def test_faust_still_calls_what_is_overridden(caller: Callable[..., Any], call: str) -> None:
    assert call in source(caller), f"{caller.__qualname__} no longer runs {call}"


def test_the_aiokafka_transport_is_the_one_replaced() -> None:
    assert driver.Transport.Consumer is driver.Consumer
    assert transport.Transport.Consumer is transport.Consumer
    assert issubclass(transport.Transport, driver.Transport)


async def test_faust_s_consumer_still_has_the_private_attributes_read(tmp_path: Path) -> None:
    """Built, never connected (as faust builds it for a worker)."""
    app = faust_app("omnihub-test-private", Settings(OMNIHUB_DATA_DIR=str(tmp_path)), "127.0.0.1:9")
    consumer = app.consumer
    assert isinstance(consumer, transport.Consumer)
    missing = [name for name in CONSUMER_ATTRIBUTES if not hasattr(consumer, name)]
    assert missing == []
    assert consumer._buffered_partitions == set()
    assert consumer._read_offset[("t", 0)] is None  # a defaultdict of None
    assert faust_consumer.CONSUMER_FETCHING
    assert hasattr(app._fetcher, "_stopped")  # the fetcher ``_drain_messages`` is handed


async def test_aiokafka_s_consumer_stores_and_uses_the_fetch_settings_set() -> None:
    """``ConsumerThread`` sets ``_fetch_max_wait_ms`` and ``_fetch_min_bytes`` on the consumer
    faust built: they must be where aiokafka's constructor keeps its arguments, and be what
    ``start`` hands its fetcher."""
    consumer = aiokafka.AIOKafkaConsumer(
        bootstrap_servers="127.0.0.1:9", fetch_max_wait_ms=123, fetch_min_bytes=45
    )
    try:
        assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (123, 45)
    finally:
        await consumer.stop()
    start = source(aiokafka.AIOKafkaConsumer.start)
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start
    assert "fetch_min_bytes=self._fetch_min_bytes" in start


def test_faust_is_changed_only_in_services_worker() -> None:
    """No module outside ``services/worker`` imports faust's, mode's or aiokafka's consumer
    internals, subclasses a faust class, or sets attributes on faust's modules."""
    internals = ("faust.transport", "faust.types", "faust.worker", "mode")
    found: list[str] = []
    for path in sorted((ROOT / "services").rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith("services/worker/"):
            continue
        tree = ast.parse(path.read_text(), where)
        faust_names = {"faust"}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                if node.module.startswith(internals):
                    found.append(f"{where}:{node.lineno}: from {node.module} import")
                if node.module == "faust" or node.module.startswith("faust."):
                    faust_names.update(a.asname or a.name for a in node.names)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(internals):
                        found.append(f"{where}:{node.lineno}: import {alias.name}")
            elif isinstance(node, ast.ClassDef):
                for base in node.bases:
                    root = base
                    while isinstance(root, ast.Attribute):
                        root = root.value
                    if isinstance(root, ast.Name) and root.id in faust_names:
                        found.append(f"{where}:{node.lineno}: class {node.name} subclasses faust")
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    root = target
                    while isinstance(root, ast.Attribute):
                        root = root.value
                    if (
                        isinstance(target, ast.Attribute)
                        and isinstance(root, ast.Name)
                        and root.id in faust_names
                    ):
                        found.append(f"{where}:{node.lineno}: sets an attribute of faust")
    assert found == []

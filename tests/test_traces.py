"""Distributed traces (``services/tracing.py``) and the hub-side metrics of issue 28.

Through real processes: an api, a processors and a dispatcher exporting their spans over OTLP/HTTP
to a receiver on loopback that this module starts (a real HTTP server decoding the protobuf
export requests), on a broker of their own, so that no untraced worker of the session takes
their records. With tracing off (the session's components), the trace a request came with is
carried unchanged onto every record down to the department topic. In this process: the
in-memory exporter, the consumer lag's measure and the histogram's bulk observation.
"""

from __future__ import annotations

import asyncio
import gzip
import secrets
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiohttp import web
from aiokafka import AIOKafkaConsumer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from prometheus_client import REGISTRY, CollectorRegistry, Histogram
from prometheus_client.parser import text_string_to_metric_families

from schemas.cloudevents import TRACEPARENT_HEADER, TRACESTATE_HEADER, header_map
from schemas.topics import DELIVERY, INTERACTIONS, OUTBOUND, ROUTED
from services import tracing
from services.api.auth import Role
from services.bus.admin import ensure_topics
from services.bus.records import Record
from services.config import Settings
from services.dispatcher.app import APP_ID as DISPATCHER
from services.processors.app import APP_ID as PROCESSORS
from services.processors.metrics import observe_many
from services.stack.broker import EmbeddedBroker
from services.stack.ports import free_port, wait_for_port
from services.worker import metrics as worker_metrics
from services.worker.app import ready_file
from tests.support import eventually, start_component, stop_process, unique

DEPARTMENT_TOPICS = [spec.name for spec in ROUTED.values()]


def new_ids() -> tuple[str, str]:
    """A fresh W3C trace id and parent span id."""
    return secrets.token_hex(16), secrets.token_hex(8)


def interaction_body(email: str) -> dict[str, Any]:
    return {
        "identities": [{"type": "email", "value": email}],
        "text": "My last invoice is wrong, please refund me",
        "provider_message_id": unique("tr"),
    }


async def find_record(bootstrap: str, topics: list[str], ce_id: str, timeout: float = 30) -> Any:
    """The first record of ``topics`` (read from the beginning) whose ce_id is ``ce_id``."""
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    if header_map(record.headers).get("ce_id") == ce_id:
                        return record
    finally:
        await consumer.stop()
    raise AssertionError(f"no record with ce_id {ce_id} on {topics} within {timeout}s")


async def customer_of(http: httpx.AsyncClient, email: str) -> str:
    """The id of the customer known by ``email``, once the processors have resolved it."""

    async def find() -> str | None:
        found = (await http.get("/v1/customers", params={"identity": f"email:{email}"})).json()
        return found["customers"][0]["id"] if found["customers"] else None

    return await eventually(find, timeout=30)


# --- an OTLP/HTTP receiver on loopback ------------------------------------------------------


@dataclass
class Receiver:
    """Decodes OTLP/HTTP trace exports (protobuf) into plain dicts; also answers the api
    channel's reply callbacks."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    exports: int = 0

    async def traces(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        self.exports += 1
        for resource_spans in export.resource_spans:
            service = _attributes(resource_spans.resource.attributes).get("service.name")
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "service": service,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": _attributes(span.attributes),
                            "start": span.start_time_unix_nano,
                            "end": span.end_time_unix_nano,
                        }
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    async def replies(self, request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=200, headers={"X-Message-Id": unique("ext")})

    def named(self, name: str, trace_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["name"] == name and s["trace_id"] == trace_id]

    def with_event(self, name: str, event_id: str) -> list[dict[str, Any]]:
        return [
            s
            for s in self.spans
            if s["name"] == name
            and (
                s["attributes"].get("omnihub.event_id") == event_id
                or event_id in s["attributes"].get("omnihub.event_ids", ())
            )
        ]


def _attributes(pairs: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for pair in pairs:
        value = pair.value
        kind = value.WhichOneof("value")
        if kind == "array_value":
            found[pair.key] = [getattr(v, v.WhichOneof("value")) for v in value.array_value.values]
        elif kind is not None:
            found[pair.key] = getattr(value, kind)
    return found


@dataclass
class TracedHub:
    api: str
    bootstrap: str
    receiver: Receiver
    processors_metrics: str
    dispatcher_metrics: str
    token: str


@pytest.fixture(scope="module")
async def traced_hub(
    stack: Any,
    component_env: dict[str, str],
    data_dir: Path,
    tokens: dict[Role, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[TracedHub]:
    """api, processors and dispatcher exporting spans to this module's receiver, on a broker of
    their own and the session's PostgreSQL."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.traces)
    app.router.add_post("/replies", receiver.replies)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    logs = tmp_path_factory.mktemp("traced")
    broker = EmbeddedBroker(logs)
    broker.start()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        await ensure_topics(broker.bootstrap)
        env = dict(
            component_env,
            KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
            OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{port}",
            OTEL_BSP_SCHEDULE_DELAY="100",  # ms between exports: the spans arrive promptly
            OMNIHUB_API_CALLBACK_URL=f"http://127.0.0.1:{port}/replies",
            OMNIHUB_API_CALLBACK_SECRET="traced-secret",
        )
        api_port, processors_port, dispatcher_port = free_port(), free_port(), free_port()
        api = start_component("api", dict(env, OMNIHUB_HTTP_PORT=str(api_port)), logs / "api.log")
        procs.append(api)
        for name, metrics_port in (
            ("processors", processors_port),
            ("dispatcher", dispatcher_port),
        ):
            own = dict(env, OMNIHUB_METRICS_PORT=str(metrics_port))
            procs.append(start_component(name, own, logs / f"{name}.log"))
        wait_for_port("127.0.0.1", api_port, 30, alive=lambda: api.poll() is None)
        settings = Settings(OMNIHUB_DATA_DIR=data_dir)
        for proc, app_id in zip(procs[1:], (PROCESSORS, DISPATCHER), strict=True):
            marker = ready_file(settings, app_id, proc.pid)  # joined its group

            async def joined(marker: Path = marker, proc: Any = proc) -> bool:
                assert proc.poll() is None, f"{proc.args} exited"
                return await asyncio.to_thread(marker.exists)

            await eventually(joined, timeout=60)
        yield TracedHub(
            api=f"http://127.0.0.1:{api_port}",
            bootstrap=broker.bootstrap,
            receiver=receiver,
            processors_metrics=f"http://127.0.0.1:{processors_port}/metrics",
            dispatcher_metrics=f"http://127.0.0.1:{dispatcher_port}/metrics",
            token=tokens[Role.INTEGRATION],
        )
    finally:
        for proc in procs:
            stop_process(proc)
        broker.stop()
        await runner.cleanup()


@pytest.fixture
async def traced(traced_hub: TracedHub) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the traced api."""
    headers = {"authorization": f"Bearer {traced_hub.token}"}
    async with httpx.AsyncClient(base_url=traced_hub.api, headers=headers, timeout=30) as http:
        yield http


def only(spans: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(spans) == 1, spans
    return spans[0]


# --- tracing on, through real processes ------------------------------------------------------


async def test_a_posted_interaction_s_trace_reaches_the_timeline_write_and_the_routed_record(
    traced_hub: TracedHub, traced: httpx.AsyncClient
) -> None:
    trace_id, parent = new_ids()
    response = await traced.post(
        "/v1/interactions",
        json=interaction_body(f"{unique('tr')}@example.com"),
        headers={"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "omnihub-test=1"},
    )
    assert response.status_code == 202, response.text
    event_id = response.json()["event_id"]
    receiver = traced_hub.receiver

    async def exported() -> bool:
        return all(receiver.named(n, trace_id) for n in (tracing.TIMELINE, tracing.ROUTE))

    await eventually(exported, timeout=30)
    ingest = only(receiver.named(tracing.INGEST, trace_id))
    write = only(receiver.named(tracing.TIMELINE, trace_id))
    route = only(receiver.named(tracing.ROUTE, trace_id))
    assert ingest["service"] == "omnihub-api" and ingest["parent"] == parent
    assert ingest["attributes"]["omnihub.event_ids"] == [event_id]
    assert write["service"] == route["service"] == "omnihub-processors"
    assert write["parent"] == route["parent"] == ingest["span_id"]  # the consumed record's
    assert write["attributes"]["omnihub.event_id"] == route["attributes"]["omnihub.event_id"]
    assert write["attributes"]["omnihub.event_id"] == event_id
    assert write["attributes"]["omnihub.agent"] == "unify"
    assert ingest["start"] <= write["start"] <= write["end"] <= route["start"] <= route["end"]

    accepted = await find_record(traced_hub.bootstrap, [INTERACTIONS.name], event_id)
    headers = header_map(accepted.headers)
    assert headers[TRACEPARENT_HEADER] == f"00-{trace_id}-{ingest['span_id']}-01"
    routed = await find_record(traced_hub.bootstrap, DEPARTMENT_TOPICS, event_id)
    headers = header_map(routed.headers)
    assert headers[TRACEPARENT_HEADER] == f"00-{trace_id}-{route['span_id']}-01"
    assert headers[TRACESTATE_HEADER] == "omnihub-test=1"
    assert routed.topic in route["attributes"]["messaging.destination.name"].split(",")


async def test_a_reply_s_trace_goes_through_the_dispatcher_s_send_to_the_timeline(
    traced_hub: TracedHub, traced: httpx.AsyncClient
) -> None:
    email = f"{unique('tr')}@example.com"
    assert (await traced.post("/v1/interactions", json=interaction_body(email))).status_code == 202
    customer_id = await customer_of(traced, email)
    trace_id, parent = new_ids()
    response = await traced.post(
        f"/v1/customers/{customer_id}/messages",
        json={"channel": "api", "text": "We are on it"},
        headers={"traceparent": f"00-{trace_id}-{parent}-01"},
    )
    assert response.status_code == 202, response.text
    receiver = traced_hub.receiver

    def writes() -> dict[str, dict[str, Any]]:
        spans = receiver.named(tracing.TIMELINE, trace_id)
        return {s["attributes"]["omnihub.agent"]: s for s in spans}

    async def written() -> bool:  # the outbound interaction and its delivery state
        return set(writes()) == {"unify", "delivery"}

    await eventually(written, timeout=30)
    ingest = only(receiver.named(tracing.INGEST, trace_id))
    send = only(receiver.named(tracing.DISPATCH, trace_id))
    assert ingest["parent"] == parent
    assert ingest["attributes"]["messaging.destination.name"] == OUTBOUND.name
    assert send["service"] == "omnihub-dispatcher" and send["parent"] == ingest["span_id"]
    assert send["attributes"]["omnihub.command_id"] == response.json()["command_id"]
    assert send["attributes"]["omnihub.state"] == "sent"
    # the dispatcher's records (its interaction, the delivery state) carry its send
    assert [w["parent"] for w in writes().values()] == [send["span_id"]] * 2
    assert len(receiver.named(tracing.TIMELINE, trace_id)) == 2


async def test_a_request_without_traceparent_starts_a_trace(
    traced_hub: TracedHub, traced: httpx.AsyncClient
) -> None:
    response = await traced.post(
        "/v1/interactions", json=interaction_body(f"{unique('tr')}@example.com")
    )
    event_id = response.json()["event_id"]
    receiver = traced_hub.receiver

    async def written() -> list[dict[str, Any]]:
        return receiver.with_event(tracing.TIMELINE, event_id)

    [write] = await eventually(written, timeout=30)
    ingest = only(receiver.with_event(tracing.INGEST, event_id))
    assert ingest["parent"] == ""  # a root: a new trace
    assert write["trace_id"] == ingest["trace_id"] and write["parent"] == ingest["span_id"]


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


async def test_the_workers_measure_their_lag_and_the_acceptance_to_timeline_time(
    traced_hub: TracedHub, traced: httpx.AsyncClient, pool: asyncpg.Pool
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:

        async def scrape(url: str) -> str:
            return (await http.get(url)).text

        def total(text: str, suffix: str) -> float:
            return sum(v for _, v in samples(text, f"omnihub_acceptance_to_timeline_{suffix}"))

        before = await scrape(traced_hub.processors_metrics)
        posted = []
        for _ in range(20):
            response = await traced.post(
                "/v1/interactions", json=interaction_body(f"{unique('lag')}@example.com")
            )
            posted.append(response.json()["event_id"])

        async def on_timeline() -> bool:
            n = await pool.fetchval(
                "SELECT count(*) FROM timeline WHERE event_id = ANY($1::uuid[])", posted
            )
            return bool(n == len(posted))

        await eventually(on_timeline, timeout=30)
        after = await scrape(traced_hub.processors_metrics)
        count = total(after, "seconds_count") - total(before, "seconds_count")
        seconds = total(after, "seconds_sum") - total(before, "seconds_sum")
        assert count >= len(posted)
        assert 0 < seconds / count < 30  # accepted a moment before: seconds, not hours
        buckets = dict(
            (labels["le"], value)
            for labels, value in samples(after, "omnihub_acceptance_to_timeline_seconds_bucket")
        )
        assert buckets["+Inf"] == total(after, "seconds_count")

        async def caught_up(url: str, group: str, topic: str) -> list[Any]:
            lag = [
                (labels, value)
                for labels, value in samples(await scrape(url), "omnihub_consumer_lag")
                if labels["group"] == group and labels["topic"] == topic
            ]
            assert all(value >= 0 for _, value in lag), lag
            held = {labels["partition"] for labels, _ in lag}
            # one worker in the group holds every partition; all committed by now
            if held == {str(p) for p in range(8)} and all(value == 0 for _, value in lag):
                return lag
            return []

        await eventually(
            lambda: caught_up(traced_hub.processors_metrics, PROCESSORS, INTERACTIONS.name),
            timeout=30,
        )
        await eventually(
            lambda: caught_up(traced_hub.dispatcher_metrics, DISPATCHER, OUTBOUND.name),
            timeout=30,
        )


# --- tracing off (the session's components) -------------------------------------------------


@pytest.mark.usefixtures("processors", "dispatcher")
async def test_with_tracing_off_the_request_s_trace_is_carried_unchanged(
    stack: Any, client: httpx.AsyncClient
) -> None:
    trace_id, parent = new_ids()
    traceparent = f"00-{trace_id}-{parent}-00"  # not sampled: still carried as it came
    email = f"{unique('off')}@example.com"
    response = await client.post(
        "/v1/interactions",
        json=interaction_body(email),
        headers={"traceparent": traceparent, "tracestate": "a=1,b=2"},
    )
    event_id = response.json()["event_id"]
    for topics in ([INTERACTIONS.name], DEPARTMENT_TOPICS):
        record = await find_record(stack.bootstrap, topics, event_id)
        assert header_map(record.headers)[TRACEPARENT_HEADER] == traceparent
        assert header_map(record.headers)[TRACESTATE_HEADER] == "a=1,b=2"

    customer_id = await customer_of(client, email)
    reply_trace = f"00-{new_ids()[0]}-{parent}-01"
    response = await client.post(
        f"/v1/customers/{customer_id}/messages",
        json={"channel": "api", "text": "Noted"},
        headers={"traceparent": reply_trace},
    )
    command_id = response.json()["command_id"]
    for topics in ([OUTBOUND.name], [DELIVERY.name]):  # the command, the dispatcher's state
        record = await find_record(stack.bootstrap, topics, command_id)
        headers = header_map(record.headers)
        assert headers[TRACEPARENT_HEADER] == reply_trace
        assert TRACESTATE_HEADER not in headers

    untraced = await client.post(
        "/v1/interactions", json=interaction_body(f"{unique('off')}@example.com")
    )
    record = await find_record(stack.bootstrap, DEPARTMENT_TOPICS, untraced.json()["event_id"])
    assert TRACEPARENT_HEADER not in header_map(record.headers)


# --- in this process -------------------------------------------------------------------------


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Spans of this process, kept in memory; tracing off again afterwards."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use(provider)
    yield memory
    tracing.use(None)


def record(topic: str = "t") -> Record:
    return Record(topic, b"k", b"{}", [("ce_id", b"e-1"), ("content-type", b"application/json")])


def test_a_request_s_trace_headers_are_noted_only_with_a_traceparent() -> None:
    token = tracing.enter_request([(b"tracestate", b"a=1"), (b"accept", b"*/*")])
    assert tracing.request_trace() == ()
    tracing.leave_request(token)
    assert tracing.request_trace() is None
    token = tracing.enter_request([(b"traceparent", b"00-x-y-01"), (b"tracestate", b"a=1")])
    assert tracing.request_trace() == (
        (TRACEPARENT_HEADER, b"00-x-y-01"),
        (TRACESTATE_HEADER, b"a=1"),
    )
    tracing.leave_request(token)


def test_off_a_request_s_records_carry_its_trace_as_it_came() -> None:
    assert not tracing.enabled()
    trace = ((TRACEPARENT_HEADER, b"not even valid"),)
    with tracing.request_publish([record()], trace) as carried:
        assert header_map(carried[0].headers)[TRACEPARENT_HEADER] == "not even valid"
    untouched = [record()]
    with tracing.request_publish(untouched, ()) as carried:
        assert carried is untouched


def test_on_a_request_s_records_carry_its_ingest_span(exporter: InMemorySpanExporter) -> None:
    trace_id, parent = new_ids()
    trace = ((TRACEPARENT_HEADER, f"00-{trace_id}-{parent}-01".encode()),)
    with tracing.request_publish([record(), record("u")], trace) as carried:
        assert not exporter.get_finished_spans()  # ended once the block (the acks) is over
    [span] = exporter.get_finished_spans()
    assert span.name == tracing.INGEST
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent
    assert span.attributes is not None and span.attributes["messaging.destination.name"] == "t,u"
    own = f"00-{trace_id}-{span.context.span_id:016x}-01"
    assert [header_map(r.headers)[TRACEPARENT_HEADER] for r in carried] == [own, own]

    with pytest.raises(TimeoutError), tracing.request_publish([record()], ()):
        raise TimeoutError("the broker did not answer")
    failed = exporter.get_finished_spans()[-1]
    assert failed.parent is None and failed.status.status_code is StatusCode.ERROR


def test_a_bulk_observation_equals_observing_one_by_one() -> None:
    values = [0.0, 0.01, 0.0100001, 0.07, 0.25, 1.5, 300.0, 301.0, -0.5, 0.07]
    registries = CollectorRegistry(), CollectorRegistry()
    one, bulk = (
        Histogram("x_seconds", "x", buckets=(0.01, 0.1, 0.25, 300.0), registry=r)
        for r in registries
    )
    for value in values:
        one.observe(value)
    observe_many(bulk, values)

    def observed(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
        return [
            (s.name, s.labels, s.value)
            for family in registry.collect()
            for s in family.samples
            if not s.name.endswith("_created")
        ]

    assert observed(registries[1]) == observed(registries[0])
    buckets = [v for name, _, v in observed(registries[1]) if name == "x_seconds_bucket"]
    assert buckets == [3, 6, 7, 9, 10]  # cumulative, a value on a bound counted in it


@dataclass
class FakeConsumer:
    """The part of omnihub's faust consumer ``measure_lag`` reads."""

    held: set[Any]
    listed: dict[Any, int]
    fetched: dict[Any, int]
    committed: dict[Any, int]
    positions: dict[Any, int]

    def assignment(self) -> set[Any]:
        return self.held

    async def highwaters(self, *tps: Any) -> dict[Any, int]:
        return {tp: self.listed[tp] for tp in tps if tp in self.listed}

    def highwater(self, tp: Any) -> int | None:
        return self.fetched.get(tp)

    def committed_offset(self, tp: Any) -> int | None:
        return self.committed.get(tp)

    async def position(self, tp: Any) -> int | None:
        return self.positions.get(tp)


async def test_the_lag_of_held_partitions_is_measured_and_revoked_ones_dropped() -> None:
    from faust.types import TP

    group = unique("group")
    a, b, c = TP("t", 0), TP("t", 1), TP("u", 0)
    consumer = FakeConsumer(
        held={a, b, c},
        listed={a: 10, b: 6, c: 3},  # c: Tansu's ListOffsets, one past its last batch's start
        fetched={c: 7},  # ... and the last fetch's high watermark, exact
        committed={a: 4, c: 7},
        positions={b: 2},  # nothing committed for b: what was fetched
    )

    def lag(tp: Any) -> float | None:
        labels = {"group": group, "topic": tp.topic, "partition": str(tp.partition)}
        return REGISTRY.get_sample_value("omnihub_consumer_lag", labels)

    shown = await worker_metrics.measure_lag(consumer, group, set())
    assert (lag(a), lag(b), lag(c)) == (6, 4, 0)
    consumer.held = {a}
    consumer.committed[a] = 10
    assert await worker_metrics.measure_lag(consumer, group, shown) == {(group, "t", "0")}
    assert (lag(a), lag(b), lag(c)) == (0, None, None)

"""The stream agents: unify (interaction -> customer, then timeline and department topics),
project (timeline and department topics for events already attributed to a customer, from the
unified topic), delivery (delivery states of outbound messages, the providers' receipts
among them resolved to their commands) and stage (staged inputs handed back to their
adapters, ``services.processors.staged``)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import faust

from schemas import DeliveryStatus, Interaction, UnifiedEvent
from schemas.cloudevents import Trace
from schemas.events import utcnow
from schemas.topics import DELIVERY, INTERACTIONS, STAGED, UNIFIED
from services import tracing
from services.bus.records import Record
from services.customers import consent
from services.identity.resolver import Resolution, resolve
from services.keys.reader import Unopened
from services.keys.seal import customer_event_records
from services.processors import metrics, traces
from services.processors.pipeline import Batches, Pipeline
from services.processors.pipeline import Step as AnyStep
from services.processors.receipts import (
    claim_parked,
    forwarded,
    resolve_receipts,
    split_receipts,
)
from services.processors.route import Routed, RouteStep, messages_of
from services.processors.shared import ProcessorResources
from services.processors.staged import stage_step
from services.processors.timeline import insert_events, mark_undeliverable, write_states
from services.routing.engine import Languages, Message
from services.worker import metrics as worker_metrics
from services.worker.app import raw_topic
from services.worker.decode import decode_batch

log = logging.getLogger(__name__)

SOURCE = "services/processors"

#: A step of the processors' agents.
Step = AnyStep[ProcessorResources]

#: The source of the outbound interactions the dispatcher records for what it sent.
DISPATCHER = "services/dispatcher"
_ECHOES = """
SELECT channel, provider_message_id FROM outbound_messages
WHERE (channel, provider_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


async def drop_echoes(conn: Any, interactions: list[Interaction]) -> list[Interaction]:
    """Remove interactions that are the provider echoing a message we sent: inbound ones, and
    outbound ones a channel reports (a platform echoing what the page sent: the hub's own
    replies among them); the dispatcher's own rows (``command:<id>``) never match."""
    echoing = [i for i in interactions if i.source != DISPATCHER]
    if not echoing:
        return interactions
    rows = await conn.fetch(
        _ECHOES, [i.channel.value for i in echoing], [i.provider_message_id for i in echoing]
    )
    if not rows:
        return interactions
    ours = {(r["channel"], r["provider_message_id"]) for r in rows}
    kept = [
        i
        for i in interactions
        if i.source == DISPATCHER or (i.channel.value, i.provider_message_id) not in ours
    ]
    metrics.ECHOES_DROPPED.inc(len(interactions) - len(kept))
    return kept


async def _write(conn: Any, route: RouteStep, work: Work) -> tuple[list[Record], list[uuid.UUID]]:
    """Record the batch's routing and write it into the timeline in a transaction; return the
    routed records still to publish and the events they belong to. The timeline rows come
    last, so their ``projected_at`` (the statement's clock) is within milliseconds of the
    commit that makes them visible."""
    assert work.routed is not None
    async with conn.transaction():
        routed, published = await route.record(conn, work.routed)
        written = await insert_events(
            conn,
            work.unified,
            work.routed.interactions(),
            keep_deleted=route.settings.keep_deleted_text,
        )
    metrics.TIMELINE_ROWS.inc(written)
    return routed, published


async def _resolve(
    conn: Any, resources: ProcessorResources, interactions: list[Interaction]
) -> tuple[list[UnifiedEvent], Resolution]:
    """Drop echoes and resolve each interaction's customer (with its consent statements) in a
    transaction of its own: it holds the customers' rows locked (FOR NO KEY UPDATE; a merged
    one FOR UPDATE), so it commits before routing starts and another batch resolving the same
    customers waits only that long (timeline writes wait only for merges)."""
    async with conn.transaction():
        kept = await drop_echoes(conn, interactions)
        resolution = await resolve(conn, kept, resources.identity_rules)
        await consent.apply_changes(
            conn,
            [
                consent.ConsentWrite(customer, change, i.occurred_at, i.event_id)
                for i, customer in zip(kept, resolution.customers, strict=True)
                for change in i.consent
            ],
        )
    now = utcnow()
    unified = [
        UnifiedEvent(event_id=i.event_id, customer_id=customer, unified_at=now, interaction=i)
        for i, customer in zip(kept, resolution.customers, strict=True)
    ]
    return unified, resolution


@dataclass(frozen=True)
class Work:
    """A batch on its way through an agent's steps (each step returns a new one)."""

    #: Records to publish with the batch: dead letters, delivery receipts forwarded to the
    #: delivery topic, customer events.
    records: tuple[Record, ...]
    #: Languages detected for the batch's messages, ahead of routing.
    detected: Languages
    #: What the rules look at in each interaction, by the id its unified event has.
    messages: Mapping[uuid.UUID, Message] = field(default_factory=dict)
    #: Decoded interactions still to resolve (unify; empty once resolved).
    interactions: tuple[Interaction, ...] = ()
    #: Events attributed to their customers, for the timeline and routing.
    unified: tuple[UnifiedEvent, ...] = ()
    #: Their routing, decided ahead of the transaction that records it.
    routed: Routed | None = None
    dead: int = 0
    #: The trace headers of the records the events came in, by event id (those that had).
    traces: Mapping[uuid.UUID, Trace] = field(default_factory=dict)
    #: When the batch's first step began (ns since the epoch: its spans start there).
    started: int = field(default_factory=time.time_ns)


def prepare_interactions(route: RouteStep) -> Step:
    """The unify agent's first step: open and decode the batch (what does not open or
    validate becomes a dead letter), forward delivery receipts in the shape older versions
    published them (interactions with ``delivery`` set) to the delivery topic, detect the
    messages' languages."""

    async def prepare(resources: ProcessorResources, events: Sequence[Any]) -> Work:
        started = time.time_ns()
        decoded = decode_batch(
            events, Interaction, stage="unify", values=await opened(resources, events)
        )
        interactions, receipts = split_receipts(decoded.models)
        messages = messages_of((i.event_id, i) for i in interactions)
        return Work(
            records=(*decoded.dead, *forwarded(receipts)),
            detected=route.detect(messages.values()),
            messages=messages,
            interactions=tuple(interactions),
            dead=len(decoded.dead),
            traces=traces.by_event(decoded),
            started=started,
        )

    return prepare


async def opened(resources: ProcessorResources, events: Sequence[Any]) -> list[bytes | Unopened]:
    """The events' values opened: raw records come sealed with their period's key (plain ones,
    from before sealing or an import, as they are)."""
    pool, _ = await resources.ready()
    return await resources.reader.open_each(pool, [event.message for event in events])


async def resolve_step(resources: ProcessorResources, work: Work) -> Work:
    """The unify agent's second step: each interaction's customer resolved (one transaction,
    see ``_resolve``)."""
    pool, _ = await resources.ready()
    records = list(work.records)
    unified: list[UnifiedEvent] = []
    if work.interactions:
        async with pool.acquire() as conn:
            unified, resolution = await _resolve(conn, resources, list(work.interactions))
            if resolution.events:
                records += await customer_event_records(conn, resolution.events, SOURCE)
    return replace(work, records=tuple(records), interactions=(), unified=tuple(unified))


def route_step(route: RouteStep) -> Step:
    """Decide where the batch's events go and make their records, with their customers'
    consents and profiles as they stand (one read, no transaction, nothing written)."""

    async def decide(resources: ProcessorResources, work: Work) -> Work:
        if not work.unified:
            return work
        pool, _ = await resources.ready()
        async with pool.acquire() as conn:
            routed = await route.decide(
                conn, work.unified, work.detected, work.messages, work.traces
            )
        return replace(work, routed=routed)

    return decide


def write_step(route: RouteStep, stages: Sequence[str]) -> Step:
    """The last step of the unify and project agents: record the routing and write the batch
    into the timeline (one transaction, see ``_write``), publish the routed records with the
    batch's others, and start marking them published."""

    async def write(resources: ProcessorResources, work: Work) -> None:
        pool, producer = await resources.ready()
        outputs: list[Record] = []
        published: list[uuid.UUID] = []
        spans: list[Any] = []
        committed = None
        if work.unified:
            async with pool.acquire() as conn:
                outputs, published = await _write(conn, route, work)
            committed = utcnow()
            if tracing.enabled():
                outputs, spans = traces.write_spans(work, published, stages[0])
        await producer.send_all([*outputs, *work.records])
        tracing.finish(spans)
        if committed is not None:  # once the step is done (a retried step observes once)
            metrics.observe_acceptance(work.unified, committed)
        await resources.marks.add(pool, published)
        for stage in stages:
            worker_metrics.PROCESSED.labels(stage).inc(len(work.unified))
        worker_metrics.DEAD_LETTERS.labels(stages[0]).inc(work.dead)

    return write


def unify_steps(route: RouteStep) -> list[Step]:
    """The unify agent: a batch's interactions are resolved to their customers (one
    transaction), then written into the timeline and routed (a second one, as the project
    agent does); the routed records and any ``customer.merged`` events are published before
    the batch's offsets may be committed. A crash between the two transactions redelivers the
    batch, whose resolution is then found already done."""
    return [
        prepare_interactions(route),
        resolve_step,
        route_step(route),
        write_step(route, STAGES["unify"]),
    ]


def project_steps(route: RouteStep) -> list[Step]:
    """The project agent, for events whose customer is already resolved (published on the
    unified topic by imports, replays or an older version of the hub): written into the
    timeline and routed in one transaction a batch, as unify's second transaction does."""

    async def prepare(resources: ProcessorResources, events: Sequence[Any]) -> Work:
        started = time.time_ns()
        decoded = decode_batch(
            events, UnifiedEvent, stage="project", values=await opened(resources, events)
        )
        messages = messages_of((e.event_id, e.interaction) for e in decoded.models)
        return Work(
            records=tuple(decoded.dead),
            detected=route.detect(messages.values()),
            messages=messages,
            unified=tuple(decoded.models),
            dead=len(decoded.dead),
            traces=traces.by_event(decoded),
            started=started,
        )

    return [prepare, route_step(route), write_step(route, STAGES["project"])]


async def delivery_step(resources: ProcessorResources, events: Sequence[Any]) -> None:
    """The delivery agent: record delivery states of outbound messages. The dispatcher's are
    attributed to their commands already; a provider's receipt (``UNRESOLVED_COMMAND``) is
    attributed here through the provider's message id the dispatcher recorded, or parked
    until the dispatcher's own state of the message claims it (``services.processors.receipts``)."""
    started = time.time_ns()
    pool, producer = await resources.ready()
    decoded = decode_batch(events, DeliveryStatus, stage="delivery")
    if decoded.models:
        async with pool.acquire() as conn:
            states = await resolve_receipts(conn, decoded.models)
            await write_states(conn, states)
            await mark_undeliverable(conn, states)
            await claim_parked(conn, states)
        if tracing.enabled():
            traces.delivery_spans(decoded, started)
    if decoded.dead:
        await producer.send_all(decoded.dead)
    worker_metrics.PROCESSED.labels("delivery").inc(len(decoded.models))


#: The stages each agent's events count as processed in (``omnihub_processed_total``).
STAGES = {"unify": ("unify", "project", "route"), "project": ("project", "route")}


def install_agents(app: faust.App, resources: ProcessorResources, batch: int, wait: float) -> None:
    """Attach every agent to ``app``; each acks its batch only after the batch is durable."""
    route = RouteStep(resources.settings)  # one router (and classifier) for both agents
    agents: dict[str, tuple[str, list[Step]]] = {
        "unify": (INTERACTIONS.name, unify_steps(route)),
        "project": (UNIFIED.name, project_steps(route)),
        "delivery": (DELIVERY.name, [delivery_step]),
        "stage": (STAGED.name, [stage_step(resources.stagers)]),
    }
    for name, (topic_name, steps) in agents.items():
        _install(app, name, raw_topic(app, topic_name), steps, resources, batch, wait)


def _install(
    app: faust.App,
    name: str,
    topic: Any,
    steps: list[Step],
    resources: ProcessorResources,
    batch: int,
    wait: float,
) -> None:
    async def agent(stream: Any) -> None:
        events = stream.noack()  # acked by the pipeline, each once its batch is done
        pipeline = Pipeline(steps, resources, name, events.ack)
        async with pipeline.running(), Batches(pipeline, batch, wait).running() as batches:
            async for event in events.events():
                await batches.add(event)

    agent.__name__ = agent.__qualname__ = f"omnihub_{name}"
    # concurrency=1: a later batch must never commit an offset past an unfinished one (#606);
    # the pipeline finishes batches in order for the same reason.
    app.agent(topic, name=f"omnihub.{name}", concurrency=1)(agent)

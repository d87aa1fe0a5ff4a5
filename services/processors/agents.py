"""The stream agents: unify (interaction -> customer, then timeline and department topics),
project (timeline and department topics for events already attributed to a customer, from the
unified topic) and delivery (delivery states of outbound messages)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

import faust

from schemas import DeliveryStatus, Direction, Interaction, UnifiedEvent
from schemas.events import utcnow
from schemas.topics import CUSTOMERS, DELIVERY, INTERACTIONS, UNIFIED
from services.bus.records import Record, to_record
from services.customers import consent
from services.identity.resolver import Resolution, resolve
from services.processors import metrics
from services.processors.batches import Handler, handle_durably
from services.processors.decode import decode_batch
from services.processors.receipts import claim_parked, resolve_receipts, split_receipts
from services.processors.resources import Resources
from services.processors.route import RouteStep
from services.processors.timeline import insert_events, write_states

log = logging.getLogger(__name__)

SOURCE = "services/processors"

_ECHOES = """
SELECT channel, provider_message_id FROM outbound_messages
WHERE (channel, provider_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
"""


async def drop_echoes(conn: Any, interactions: list[Interaction]) -> list[Interaction]:
    """Remove inbound interactions that are the provider echoing a message we sent."""
    inbound = [i for i in interactions if i.direction is Direction.INBOUND]
    if not inbound:
        return interactions
    rows = await conn.fetch(
        _ECHOES, [i.channel.value for i in inbound], [i.provider_message_id for i in inbound]
    )
    if not rows:
        return interactions
    ours = {(r["channel"], r["provider_message_id"]) for r in rows}
    kept = [
        i
        for i in interactions
        if i.direction is Direction.OUTBOUND or (i.channel.value, i.provider_message_id) not in ours
    ]
    metrics.ECHOES_DROPPED.inc(len(interactions) - len(kept))
    return kept


async def _project(
    conn: Any, route: RouteStep, events: Sequence[UnifiedEvent]
) -> tuple[list[Record], list[uuid.UUID]]:
    """Route unified events and write them into the timeline in a transaction; return the
    routed records still to publish and the events they belong to. The timeline rows come
    last, so their ``projected_at`` (the statement's clock) is within milliseconds of the
    commit that makes them visible."""
    async with conn.transaction():
        routed, published = await route.decide_and_record(conn, events)
        written = await insert_events(conn, events)
    metrics.TIMELINE_ROWS.inc(written)
    return routed, published


async def _publish_routed(
    resources: Resources, outputs: list[Record], published: list[uuid.UUID]
) -> None:
    """Publish the batch's records; once they are acked, start marking its routed events
    published (landing while the next batch is gathered, see PublishedMarks)."""
    pool, producer = await resources.ready()
    await producer.send_all(outputs)
    await resources.marks.add(pool, published)


async def _resolve(
    conn: Any, resources: Resources, interactions: list[Interaction]
) -> tuple[list[UnifiedEvent], Resolution]:
    """Drop echoes and resolve each interaction's customer (with its consent statements) in a
    transaction of its own: it holds the customers FOR UPDATE, so it commits before routing
    starts and another worker's batch for the same customers waits only that long."""
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


def unify_handler(route: RouteStep) -> Handler:
    """The unify agent's handler: a batch's interactions are resolved to their customers (one
    transaction), then written into the timeline and routed (a second one, as the project
    agent does); the routed records and any ``customer.merged`` events are published before
    faust may commit the batch's offsets. A crash between the two transactions redelivers the
    batch, whose resolution is then found already done."""

    async def unify_batch(resources: Resources, events: Sequence[Any]) -> None:
        pool, _ = await resources.ready()
        decoded = decode_batch(events, Interaction, stage="unify")
        decoded.models, receipts = split_receipts(decoded.models)
        outputs: list[Record] = list(decoded.dead)
        published: list[uuid.UUID] = []
        if receipts:  # delivery receipts update the message they are about, not the timeline
            async with pool.acquire() as conn:
                states = await resolve_receipts(conn, receipts)
            outputs += [to_record(DELIVERY, s, str(s.command_id), SOURCE) for s in states]
        if decoded.models:
            async with pool.acquire() as conn:
                unified, resolution = await _resolve(conn, resources, decoded.models)
                routed, published = await _project(conn, route, unified)
            outputs += routed
            outputs += [to_record(CUSTOMERS, e, str(e.event_id), SOURCE) for e in resolution.events]
        await _publish_routed(resources, outputs, published)
        for stage in ("unify", "project", "route"):
            metrics.PROCESSED.labels(stage).inc(len(decoded.models))
        metrics.DEAD_LETTERS.labels("unify").inc(len(decoded.dead))

    return unify_batch


def project_handler(route: RouteStep) -> Handler:
    """The project agent's handler, for events whose customer is already resolved (published
    on the unified topic by imports, replays or an older version of the hub): written into the
    timeline and routed in one transaction a batch, as unify's second transaction does."""

    async def project_batch(resources: Resources, events: Sequence[Any]) -> None:
        pool, _ = await resources.ready()
        decoded = decode_batch(events, UnifiedEvent, stage="project")
        outputs: list[Record] = list(decoded.dead)
        published: list[uuid.UUID] = []
        if decoded.models:
            async with pool.acquire() as conn:
                routed, published = await _project(conn, route, decoded.models)
            outputs += routed
        await _publish_routed(resources, outputs, published)
        for stage in ("project", "route"):
            metrics.PROCESSED.labels(stage).inc(len(decoded.models))
        metrics.DEAD_LETTERS.labels("project").inc(len(decoded.dead))

    return project_batch


async def delivery_batch(resources: Resources, events: Sequence[Any]) -> None:
    """Record delivery states of outbound messages."""
    pool, producer = await resources.ready()
    decoded = decode_batch(events, DeliveryStatus, stage="delivery")
    if decoded.models:
        async with pool.acquire() as conn:
            await write_states(conn, decoded.models)
            await claim_parked(conn, decoded.models)
    if decoded.dead:
        await producer.send_all(decoded.dead)
    metrics.PROCESSED.labels("delivery").inc(len(decoded.models))


def raw_topic(app: faust.App, name: str) -> Any:
    """A faust topic whose keys and values stay bytes (we validate with pydantic)."""
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def install_agents(app: faust.App, resources: Resources, batch: int, wait: float) -> None:
    """Attach every agent to ``app``; each acks its batch only after the batch is durable."""
    route = RouteStep(resources.settings)  # one router (and classifier) for both agents
    handlers = {
        "unify": (INTERACTIONS.name, unify_handler(route)),
        "project": (UNIFIED.name, project_handler(route)),
        "delivery": (DELIVERY.name, delivery_batch),
    }
    for name, (topic_name, handler) in handlers.items():
        _install(app, name, raw_topic(app, topic_name), handler, resources, batch, wait)


def _install(
    app: faust.App,
    name: str,
    topic: Any,
    handler: Any,
    resources: Resources,
    batch: int,
    wait: float,
) -> None:
    async def agent(stream: Any) -> None:
        async for events in stream.take_events(batch, within=wait):
            await handle_durably(handler, resources, events, stage=name)

    agent.__name__ = agent.__qualname__ = f"omnihub_{name}"
    # concurrency=1: a later batch must never commit an offset past an unfinished one (#606).
    app.agent(topic, name=f"omnihub.{name}", concurrency=1)(agent)

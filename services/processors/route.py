"""Routing of unified events -> routing decisions -> omnihub.routed.<department>.v1.

Per batch, in two steps of the agents' pipeline: ``RouteStep.decide`` reads the customers'
consents in one query (a second one only if rules read customer fields), evaluates the rules in
memory and makes the routed records, writing nothing; ``RouteStep.record``, in the transaction
that writes the timeline, writes opt-outs as consent changes and decisions in
``routing_decisions`` (the timeline joins them). The caller then publishes the primary records
and their copies, acked by the broker before the batch's offsets may be committed, and marks
them published. A batch is decided while the one before it is written, so the opt-outs of the
last batches are carried into the next decisions.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import asyncpg
from prometheus_client import Counter as Metric

from schemas import ConsentChange, Interaction, UnifiedEvent
from schemas.cloudevents import NO_TRACE, Trace, ce_headers, with_event_id
from schemas.encoding import datetime_json, routed_event_json, with_language
from schemas.events import utcnow
from schemas.topics import ROUTED
from services.bus.records import Record
from services.config import Settings
from services.customers import consent
from services.db.arrays import text_array_literal
from services.keys.seal import sealed
from services.keys.store import CustomerKey, CustomerKeys
from services.routing import lookups
from services.routing.engine import Decision, Languages, Message, Router
from services.routing.language import Detected

log = logging.getLogger(__name__)

SOURCE = "services/processors"

ROUTED_TOTAL = Metric(
    "omnihub_routed_total", "Routed records published", ["department", "rule", "copy"]
)

#: The events of a deleted customer (in flight while it was erased) are left out, so they are
#: neither recorded nor returned to publish. The customers are locked FOR KEY SHARE, as the
#: timeline insert does after it in the same transaction: an erasure (FOR UPDATE) waits for this
#: batch to commit and then deletes its decisions, or this batch waits and sees it deleted.
#: Each row's columns come from its primary routing's
#: JSON (parsed once a row, OFFSET 0 keeps the planner from parsing it per column): the write
#: step has it already, made for the routed record; copies and tags go as array literals.
_DECISIONS = """
WITH live AS (
    SELECT id, status FROM customers WHERE id = ANY($2::uuid[]) ORDER BY id FOR KEY SHARE
)
INSERT INTO routing_decisions (event_id, customer_id, department, copies, priority, tags, rule_id,
                               ruleset_version, reason, language, confidence)
SELECT u.event_id, u.customer_id, r->>'department', u.copies::text[], r->>'priority',
       u.tags::text[], r->>'rule_id', r->>'ruleset_version', r->>'reason', r->>'language',
       (r->>'confidence')::real
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
     AS u(event_id, customer_id, routing, copies, tags)
CROSS JOIN LATERAL (SELECT u.routing::jsonb AS r OFFSET 0) AS parsed
LEFT JOIN live ON live.id = u.customer_id
WHERE live.status IS DISTINCT FROM 'deleted'
ON CONFLICT (event_id) DO UPDATE SET event_id = EXCLUDED.event_id
WHERE routing_decisions.published_at IS NULL
RETURNING event_id
"""

_PUBLISHED = """
UPDATE routing_decisions SET published_at = now()
WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL
"""


async def record_decisions(
    conn: asyncpg.Connection,
    decided: Sequence[tuple[UnifiedEvent, Decision]],
    routings: Mapping[uuid.UUID, str] | None = None,
) -> set[uuid.UUID]:
    """Store each routed event's primary decision (a replayed event keeps its first one);
    return the events whose records still have to be published. ``routings`` may hold primary
    routings' JSON already made, by event id."""
    known = routings or {}
    rows = [
        (
            event.event_id,
            event.customer_id,
            known.get(event.event_id) or d.primary.model_dump_json(),
            _literal(tuple(c.department.value for c in d.copies)),  # lists of lists: 2-D
            _literal(tuple(d.primary.tags)),
        )
        for event, d in decided
        if d.primary is not None
    ]
    if not rows:
        return set()
    pending = await conn.fetch(_DECISIONS, *(list(c) for c in zip(*rows, strict=True)))
    return {r["event_id"] for r in pending}


@lru_cache(maxsize=1024)
def _literal(values: tuple[str, ...]) -> str:
    """``text_array_literal`` of a rule's tags or copies, which repeat from event to event."""
    return text_array_literal(values)


def messages_of(events: Iterable[tuple[uuid.UUID, Interaction]]) -> dict[uuid.UUID, Message]:
    """What the rules look at in each (event id, interaction), by event id (made once a
    batch)."""
    return {event_id: Message.of(interaction) for event_id, interaction in events}


def decide(
    router: Router,
    events: Sequence[UnifiedEvent],
    found: lookups.Lookups,
    detected: Languages | None = None,
    withdrawn_before: Iterable[Mapping[uuid.UUID, set[str]]] = (),
    messages: Mapping[uuid.UUID, Message] | None = None,
) -> tuple[list[tuple[UnifiedEvent, Decision]], list[consent.ConsentWrite]]:
    """Route a batch in order; an opt-out also applies to the customer's later events in it,
    as do those of ``withdrawn_before`` (opt-outs decided in earlier batches, by customer,
    maybe not written yet). The messages' languages come from ``detected``
    (``RouteStep.detect``), else are detected here; their messages from ``messages`` (every
    event's, by event id), else are made here."""
    decided: list[tuple[UnifiedEvent, Decision]] = []
    writes: list[consent.ConsentWrite] = []
    withdrawn_here: dict[uuid.UUID, set[str]] = {}
    for earlier in withdrawn_before:
        for customer, purposes in earlier.items():
            withdrawn_here.setdefault(customer, set()).update(purposes)
    seen: set[uuid.UUID] = set()
    if messages is None:
        messages = messages_of((e.event_id, e.interaction) for e in events)
    if detected is None:
        detected = router.detect(messages[e.event_id] for e in events)
    for event in events:
        if event.event_id in seen:  # the same event twice in one batch (a producer retry)
            continue
        if event.interaction.revises is not None:  # an edit or deletion: routed as its original
            continue
        seen.add(event.event_id)
        customer = event.customer_id
        withdrawn = found.withdrawn(customer) | withdrawn_here.get(customer, set())
        decision = router.route(
            messages[event.event_id], found.profile(customer), frozenset(withdrawn), detected
        )
        rule = decision.primary.rule_id if decision.primary else "ignored"
        for purpose in decision.withdraw_consent:
            change = ConsentChange(
                channel="*", purpose=purpose, granted=False, reason=f"opt-out (rule {rule})"
            )
            writes.append(
                consent.ConsentWrite(
                    customer, change, event.interaction.occurred_at, event.event_id
                )
            )
            withdrawn_here.setdefault(customer, set()).add(purpose.value)
        decided.append((event, decision))
    return decided, writes


@dataclass(frozen=True, slots=True)
class Encoded:
    """One routed event's encodings, made once when it is decided."""

    #: The interaction's JSON as received (the timeline's copy).
    interaction: str
    #: Its routed records: one on the primary department's topic, one per copy.
    records: list[Record]
    #: The primary routing's JSON (the decision's row is read from it); None when ignored.
    routing: str | None = None


def encode(
    decided: Sequence[tuple[UnifiedEvent, Decision]],
    traces: Mapping[uuid.UUID, Trace] | None = None,
    keys: Mapping[uuid.UUID, CustomerKey] | None = None,
) -> dict[uuid.UUID, Encoded]:
    """Each event's interaction JSON and routed records, the interaction encoded once (for the
    timeline and every record): a record's value is spliced from it and the routing's JSON
    (``schemas.encoding``) rather than built and encoded as a ``RoutedEvent`` again. Its
    records carry the trace headers its consumed record had (``traces``, by event id), and
    are sealed with their customer's key (``keys``, by customer id; crypto-shredding,
    ``schemas.sealing``). ``keys=None`` leaves them plain (tests of the encoding)."""
    traces = traces or {}
    now = utcnow()
    routed_at = datetime_json(now)
    headers = {  # the batch's headers by department, encoded once
        d: ce_headers(event_id="", ce_type=spec.ce_type, source=SOURCE, time=now)
        for d, spec in ROUTED.items()
    }
    out: dict[uuid.UUID, Encoded] = {}
    dumped: dict[int, str] = {}  # routings' JSON by id: the router hands out shared decisions
    for event, decision in decided:
        interaction = event.interaction
        own = interaction.model_dump_json()
        sent = own
        if interaction.language is None and decision.language:
            sent = with_language(own, decision.language)  # the language rules matched in
        event_id, customer_id = str(event.event_id), str(event.customer_id)
        key = customer_id.encode()
        trace = traces.get(event.event_id, NO_TRACE)
        routings = [
            (r.department, dumped.get(id(r)) or dumped.setdefault(id(r), r.model_dump_json()))
            for r in decision.routings
        ]
        records = [
            Record(
                topic=ROUTED[department].name,
                key=key,
                value=routed_event_json(event_id, customer_id, routed_at, routing, sent).encode(),
                headers=with_event_id(headers[department], event_id, trace),
            )
            for department, routing in routings
        ]
        if keys is not None:
            records = _sealed(records, keys.get(event.customer_id))
        out[event.event_id] = Encoded(
            interaction=own, records=records, routing=routings[0][1] if routings else None
        )
    return out


def _sealed(records: list[Record], key: CustomerKey | None) -> list[Record]:
    """``records`` sealed with ``key``; none when the customer has no key (it was erased: its
    events are not recorded, so these would never be published)."""
    return [] if key is None else sealed(records, key)


def count_routed(decided: Sequence[tuple[UnifiedEvent, Decision]]) -> None:
    """Count the routed records of ``decided`` in ``omnihub_routed_total``."""
    counted: Counter[tuple[str, str, str]] = Counter()
    for _, decision in decided:
        for routing in decision.routings:
            copy = "false" if routing.copy_of is None else "true"
            counted[routing.department.value, routing.rule_id, copy] += 1
    for labels, count in counted.items():  # labels() costs ~40 us: once per kind, not per record
        ROUTED_TOTAL.labels(*labels).inc(count)


#: How many batches' opt-outs ``RouteStep`` carries into the next decisions: more than the
#: batches both agents' pipelines can hold between deciding and writing (one a step).
RECENT_BATCHES = 16


@dataclass(frozen=True)
class Routed:
    """A batch's routing, decided (and its records made) ahead of writing it."""

    decided: list[tuple[UnifiedEvent, Decision]]
    writes: list[consent.ConsentWrite]
    encoded: dict[uuid.UUID, Encoded]

    def interactions(self) -> dict[uuid.UUID, str]:
        """The interactions' JSON as received, by event id (for the timeline)."""
        return {event_id: e.interaction for event_id, e in self.encoded.items()}

    def routings(self) -> dict[uuid.UUID, str]:
        """The primary routings' JSON, by event id (for the decisions' rows)."""
        return {event_id: e.routing for event_id, e in self.encoded.items() if e.routing}


class RouteStep:
    """Routing inside the unify and project agents: decide and make the records (no writes),
    then record the decisions in the transaction that writes the timeline."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        """Load and validate the ruleset now (a bad one stops the worker at start)."""
        self.router = Router.load(settings.routing_rules, background=True)
        rules = len(self.router.ruleset.rules)
        log.info("routing with ruleset %s (%d rules)", self.router.version, rules)
        #: The opt-outs decided in the last batches: a batch is decided before the previous
        #: one's transaction has written its opt-outs (see services.processors.pipeline).
        self._recent: deque[dict[uuid.UUID, set[str]]] = deque(maxlen=RECENT_BATCHES)
        #: The customers' sealing keys (made here on a customer's first routed event).
        self.keys = CustomerKeys()

    def detect(self, messages: Iterable[Message]) -> dict[str, Detected | None]:
        """The messages' languages, detected at once ahead of routing them (no I/O)."""
        return self.router.detect(messages)

    async def decide(
        self,
        conn: asyncpg.Connection,
        events: Sequence[UnifiedEvent],
        detected: Languages | None = None,
        messages: Mapping[uuid.UUID, Message] | None = None,
        traces: Mapping[uuid.UUID, Trace] | None = None,
    ) -> Routed:
        """Route ``events`` (languages from ``detected``, a ``detect`` result, and messages from
        ``messages``, when given) with their customers' consents and profiles as they stand
        now; nothing is written. Their records carry ``traces`` (by event id; see
        ``encode``)."""
        found = await lookups.load(
            conn,
            (e.customer_id for e in events),
            with_profiles=self.router.ruleset.needs_customer,
        )
        decided, writes = decide(self.router, events, found, detected, self._recent, messages)
        opted_out: dict[uuid.UUID, set[str]] = {}
        for write in writes:
            opted_out.setdefault(write.customer_id, set()).add(write.change.purpose.value)
        self._recent.append(opted_out)
        keys = await self.keys.for_customers(
            conn, (e.customer_id for e, d in decided if d.routings)
        )
        return Routed(decided, writes, encode(decided, traces, keys))

    async def record(
        self, conn: asyncpg.Connection, routed: Routed
    ) -> tuple[list[Record], list[uuid.UUID]]:
        """Write the opt-outs and decisions of ``routed`` (inside the caller's transaction);
        returns the records still to publish (a replayed event keeps its first decision and is
        not published again once marked) and the events they belong to."""
        await consent.apply_changes(conn, routed.writes)
        pending = await record_decisions(conn, routed.decided, routed.routings())
        fresh = [(e, d) for e, d in routed.decided if e.event_id in pending]
        count_routed(fresh)
        return [r for e, _ in fresh for r in routed.encoded[e.event_id].records], [
            e.event_id for e, _ in fresh
        ]


async def mark_published(conn: asyncpg.Connection, event_ids: Sequence[uuid.UUID]) -> None:
    """Record that these events' routed records were acknowledged by the broker."""
    if event_ids:
        await conn.execute(_PUBLISHED, list(event_ids))


class PublishedMarks:
    """Marks routed events published off the batches' path; each new mark first waits for the
    ones in flight (the unify and project agents share these).

    A mark only spares a replay from publishing those records again, so it need not land
    before the batch's offsets may be committed: it runs while the worker gathers its next
    batch, and the next mark (or shutdown) waits for it. A worker dying before its mark lands
    republishes those records on replay, the same at-least-once window as between the acks and
    a mark awaited in line; a mark that fails is logged, with the same outcome.
    """

    def __init__(self) -> None:
        self._pending: set[asyncio.Task[None]] = set()

    async def add(self, pool: asyncpg.Pool, event_ids: Sequence[uuid.UUID]) -> None:
        """Start marking ``event_ids`` once the marks in flight have landed."""
        await self.flush()
        if event_ids:
            task = asyncio.create_task(self._mark(pool, list(event_ids)))
            self._pending.add(task)  # held here until done, so it is never collected early
            task.add_done_callback(self._pending.discard)

    async def flush(self) -> None:
        """Wait for the marks in flight, if any."""
        if self._pending:
            await asyncio.gather(*self._pending)

    @staticmethod
    async def _mark(pool: asyncpg.Pool, event_ids: list[uuid.UUID]) -> None:
        try:
            async with pool.acquire() as conn:
                await mark_published(conn, event_ids)
        except Exception as exc:  # a replay republishes them: logged, never raised
            log.warning("marking %d routed events published failed: %r", len(event_ids), exc)

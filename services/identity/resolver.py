"""Identity resolution for a batch of interactions, with PostgreSQL as the source of truth.

One transaction per batch:
1. lock the batch's identity values (advisory locks, in one sorted statement: no deadlock);
2. lock the rows of the customers they belong to, found in the same statement (sorted, FOR NO
   KEY UPDATE; a merged customer FOR UPDATE when it is merged), then read them with their
   other identities, sightings and separations, in one statement (again if an identity moved
   while the locks were awaited);
3. decide event by event in memory (:class:`Decider`), in batch order;
4. write the decisions in one statement (merges, shared values and flags add their own).
Two events for one new person on different partitions serialise on the locks of the values
they share, so they can never leave two customers that stay apart.
"""

from __future__ import annotations

import contextlib
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from schemas import CustomerEvent, Interaction
from schemas.events import utcnow
from services.identity import store
from services.identity.keys import Key, key_of
from services.identity.rules import IdentityRules


@dataclass
class CustomerState:
    """What the decider needs to know about one customer."""

    id: uuid.UUID
    created_at: datetime
    merge_count: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    new: bool = False


@dataclass
class Writes:
    """Everything a batch decided, applied together at the end."""

    new_customers: list[CustomerState] = field(default_factory=list)
    links: list[tuple[Key, uuid.UUID, uuid.UUID | None, str]] = field(default_factory=list)
    merges: list[store.Merge] = field(default_factory=list)
    matching: dict[Key, str] = field(default_factory=dict)
    sightings: set[tuple[Key, uuid.UUID, uuid.UUID | None]] = field(default_factory=set)
    edges: dict[tuple[Key, Key], uuid.UUID | None] = field(default_factory=dict)
    log: list[store.LogRow] = field(default_factory=list)
    flags: dict[uuid.UUID, list[str]] = field(default_factory=dict)

    def flag(self, customer: uuid.UUID, reason: str) -> None:
        """Mark a customer for review."""
        reasons = self.flags.setdefault(customer, [])
        if reason not in reasons:
            reasons.append(reason)


class Decider:
    """Decides, event by event, which customer an interaction belongs to."""

    def __init__(self, rules: IdentityRules, snapshot: store.Snapshot) -> None:
        self.rules = rules
        self.mapping: dict[Key, uuid.UUID] = dict(snapshot.mapping)
        self.matching: dict[Key, str] = dict(snapshot.matching)
        self.sightings: dict[Key, set[uuid.UUID]] = {
            k: set(v) for k, v in snapshot.sightings.items()
        }
        self.separations = snapshot.separations
        self.customers: dict[uuid.UUID, CustomerState] = {
            c.id: CustomerState(
                c.id,
                c.created_at,
                c.merge_count,
                Counter(k[0] for k in snapshot.members.get(c.id, ())),
            )
            for c in snapshot.customers
        }
        self.members: dict[uuid.UUID, set[Key]] = {
            c: set(keys) for c, keys in snapshot.members.items()
        }
        self.alias: dict[uuid.UUID, uuid.UUID] = {}
        self.writes = Writes()

    # -- helpers -------------------------------------------------------------------------
    def find(self, customer: uuid.UUID) -> uuid.UUID:
        """The live customer ``customer`` answers as (after this batch's merges)."""
        while customer in self.alias:
            customer = self.alias[customer]
        return customer

    def _new_customer(self, now: datetime) -> uuid.UUID:
        state = CustomerState(uuid.uuid4(), now, new=True)
        self.customers[state.id] = state
        self.members[state.id] = set()
        self.writes.new_customers.append(state)
        return state.id

    def _log(
        self,
        key: Key,
        customer: uuid.UUID | None,
        action: str,
        decision: str,
        rule: str,
        reason: str,
        event_id: uuid.UUID | None,
        other: uuid.UUID | None = None,
    ) -> None:
        self.writes.log.append(
            store.LogRow(key, customer, action, decision, rule, reason, event_id, other)
        )

    def _link(
        self, key: Key, customer: uuid.UUID, event_id: uuid.UUID | None, rule: str, reason: str
    ) -> None:
        self.mapping[key] = customer
        self.customers[customer].counts[key[0]] += 1
        self.members.setdefault(customer, set()).add(key)
        self.writes.links.append((key, customer, event_id, self.matching.get(key, "active")))
        self._log(key, customer, "link", "accepted", rule, reason, event_id)

    def _separated(self, left: set[Key], right: set[Key]) -> bool:
        return any(frozenset((a, b)) in self.separations for a in left for b in right)

    # -- the decision ----------------------------------------------------------------------
    def decide(self, interaction: Interaction, now: datetime) -> uuid.UUID:
        """Return the interaction's customer, recording links, merges and refusals."""
        event_id = interaction.event_id
        keys = list(dict.fromkeys(key_of(i) for i in interaction.identities))
        identities = {key_of(i): i for i in interaction.identities}
        for key in keys:
            if key not in self.mapping and key not in self.matching:
                rule = self.rules.blocked_rule(identities[key])
                if rule:
                    self.matching[key] = "blocked"
                    self._log(key, None, "block", "refused", "blocked", rule, event_id)
        if interaction.customer_id is not None:  # what the hub itself sent
            customer = self.find(interaction.customer_id)
            if customer not in self.customers:
                raise LookupError(f"outbound interaction for unknown customer {customer}")
            for key in keys:
                if key not in self.mapping:
                    self._link(key, customer, event_id, "outbound", "the hub sent to it")
            return customer

        usable = [k for k in keys if self.matching.get(k, "active") == "active"]
        candidates = self._candidates(usable)
        self._see(usable, candidates, event_id)
        usable = [k for k in usable if self.matching.get(k, "active") == "active"]
        candidates = self._candidates(usable)

        if not candidates:
            known = [k for k in keys if k in self.mapping]
            if known and not usable:  # only shared or blocked values: stay with their owner
                customer = self.find(self.mapping[known[0]])
            else:
                customer = self._new_customer(now)
        else:
            customer = candidates[0]
            if len(candidates) > 1:
                customer = self._merge_all(candidates, usable, event_id)
        for key in keys:
            if key in self.mapping:
                continue
            self._attach(key, customer, event_id, now)
        first = keys[0]
        for key in keys[1:]:
            if frozenset((first, key)) not in self.separations:
                self.writes.edges.setdefault((first, key), event_id)
        return customer

    def _candidates(self, usable: list[Key]) -> list[uuid.UUID]:
        return list(dict.fromkeys(self.find(self.mapping[k]) for k in usable if k in self.mapping))

    def _see(self, usable: list[Key], candidates: list[uuid.UUID], event_id: uuid.UUID) -> None:
        """Record which customers each value was seen with; too many makes it shared."""
        for key in usable:
            seen = self.sightings.setdefault(key, set())
            for customer in candidates:
                if customer not in seen:
                    seen.add(customer)
                    self.writes.sightings.add((key, customer, event_id))
            if key in self.mapping and len(seen) >= self.rules.shared_after:
                self.matching[key] = "shared"
                self.writes.matching[key] = "shared"
                owner = self.find(self.mapping[key])
                self._log(
                    key,
                    owner,
                    "shared",
                    "accepted",
                    "shared_after",
                    f"seen with {len(seen)} customers",
                    event_id,
                )
                for customer in {self.find(c) for c in seen if self.find(c) in self.customers}:
                    self.writes.flag(customer, f"shared identity {key[0]}:{key[2]}")

    def _merge_all(
        self, candidates: list[uuid.UUID], usable: list[Key], event_id: uuid.UUID
    ) -> uuid.UUID:
        """Merge candidates into the oldest, each unless a protection rule says no."""
        first = candidates[0]
        survivor = min(candidates, key=lambda c: (self.customers[c].created_at, str(c)))
        for other in candidates:
            if other == survivor:
                continue
            refusal = self._refusal(survivor, other)
            bridge = [
                k for k in usable if k in self.mapping and self.find(self.mapping[k]) == other
            ]
            if refusal:
                for key in bridge:
                    self._log(
                        key, other, "merge", "refused", refusal[0], refusal[1], event_id, survivor
                    )
                self.writes.flag(survivor, f"merge with {other} refused: {refusal[1]}")
                self.writes.flag(other, f"merge with {survivor} refused: {refusal[1]}")
                continue
            self.alias[other] = survivor
            state, gone = self.customers[survivor], self.customers[other]
            state.counts.update(gone.counts)
            state.merge_count += 1 + gone.merge_count
            self.members[survivor] |= self.members.pop(other, set())
            reason = f"event {event_id} carries identities of both"
            self.writes.merges.append((other, survivor, event_id, reason))
        return self.find(first)

    def _refusal(self, survivor: uuid.UUID, other: uuid.UUID) -> tuple[str, str] | None:
        a, b = self.customers[survivor], self.customers[other]
        if self._separated(self.members[survivor], self.members[other]):
            return "manual_separation", "an agent separated these identities"
        if a.merge_count + b.merge_count + 1 > self.rules.merge_cap:
            return "merge_cap", f"more than {self.rules.merge_cap} merges"
        for kind in set(a.counts) | set(b.counts):
            limit = self.rules.limit(kind)
            if limit is not None and a.counts[kind] + b.counts[kind] > limit:
                return "limit", f"more than {limit} {kind} identities"
        return None

    def _attach(self, key: Key, customer: uuid.UUID, event_id: uuid.UUID, now: datetime) -> None:
        """Link a new identity to the customer, or to a customer of its own if refused."""
        limit = self.rules.limit(key[0])
        blocked = self.matching.get(key) == "blocked"
        state = self.customers[customer]
        if not blocked and limit is not None and state.counts[key[0]] >= limit:
            reason = f"customer already has {limit} {key[0]} identities"
            self._log(key, customer, "link", "refused", "limit", reason, event_id)
            self.writes.flag(customer, f"identity {key[0]}:{key[2]} refused: {reason}")
            self._link(
                key,
                self._new_customer(now),
                event_id,
                "limit_overflow",
                "a customer of its own until reviewed",
            )
            return
        rule = "blocked" if blocked else "new_identity"
        self._link(
            key,
            customer,
            event_id,
            rule,
            "linked without matching power" if blocked else "first seen here",
        )


@dataclass(frozen=True)
class Resolution:
    """Each interaction's customer, and the lifecycle events the batch caused."""

    customers: list[uuid.UUID]
    events: list[CustomerEvent]


async def resolve(
    conn: asyncpg.Connection, interactions: Sequence[Interaction], rules: IdentityRules
) -> Resolution:
    """Resolve a batch in one transaction (the caller's, if it has one); see the module
    docstring."""
    if not interactions:
        return Resolution([], [])
    now = utcnow()
    # a nested transaction would be a savepoint: two more round trips a batch, guarding nothing
    own = conn.transaction() if not conn.is_in_transaction() else contextlib.nullcontext()
    async with own:
        keys = list(dict.fromkeys(key_of(i) for it in interactions for i in it.identities))
        hints = [i.customer_id for i in interactions if i.customer_id is not None]
        snapshot = await store.snapshot(conn, keys, hints)
        decider = Decider(rules, snapshot)
        customers = [decider.decide(i, now) for i in interactions]
        events = await store.apply(conn, decider.writes, decider.alias, rules)
    return Resolution([decider.find(c) for c in customers], events)

"""Replay stored interactions through two rulesets and list the events whose routing changes."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from schemas import Interaction
from services.routing import lookups
from services.routing.engine import Decision, Message, Router

_SINCE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

_REPLAY = """
SELECT event_id, customer_id, occurred_at, interaction FROM timeline
WHERE occurred_at >= $1 ORDER BY occurred_at, event_id LIMIT $2
"""


def parse_since(text: str) -> timedelta:
    """``7d``, ``12h``, ``30m``, ``2w``, ``90s`` -> timedelta; ValueError otherwise."""
    match = _SINCE.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 7d, 12h, 30m, 2w)")
    return timedelta(**{_UNITS[match[2]]: int(match[1])})


@dataclass(frozen=True)
class Change:
    """One event that the new ruleset routes differently."""

    event_id: uuid.UUID
    customer_id: uuid.UUID
    occurred_at: datetime
    text: str
    old: Decision
    new: Decision

    @staticmethod
    def describe(decision: Decision) -> dict[str, Any]:
        """Department, copies and rule of a decision."""
        if decision.primary is None:
            return {"department": None, "copies": [], "rule_id": "ignored"}
        return {
            "department": decision.primary.department.value,
            "copies": [c.department.value for c in decision.copies],
            "rule_id": decision.primary.rule_id,
        }

    def as_json(self) -> dict[str, Any]:
        """For `omnihub rules diff --json`."""
        return {
            "event_id": str(self.event_id),
            "customer_id": str(self.customer_id),
            "occurred_at": self.occurred_at.isoformat(),
            "text": self.text,
            "old": self.describe(self.old),
            "new": self.describe(self.new),
        }


def _key(decision: Decision) -> tuple[Any, ...]:
    described = Change.describe(decision)
    return (described["department"], tuple(described["copies"]))


@dataclass
class DiffReport:
    """How many events were replayed and which ones change department or copies."""

    replayed: int
    changes: list[Change]


async def replay(
    conn: asyncpg.Connection, old: Router, new: Router, since: datetime, limit: int = 100_000
) -> DiffReport:
    """Route the timeline's interactions since ``since`` with both routers (consent as now)."""
    rows = await conn.fetch(_REPLAY, since, limit)
    found = await lookups.load(
        conn,
        [r["customer_id"] for r in rows],
        with_profiles=old.ruleset.needs_customer or new.ruleset.needs_customer,
    )
    changes = []
    for row in rows:
        interaction = Interaction.model_validate(row["interaction"])
        message = Message.of(interaction)
        profile = found.profile(row["customer_id"])
        withdrawn = found.withdrawn(row["customer_id"])
        before = old.route(message, profile, withdrawn)
        after = new.route(message, profile, withdrawn)
        if _key(before) != _key(after):
            text = " ".join(p for p in (interaction.subject, interaction.text) if p)
            changes.append(
                Change(row["event_id"], row["customer_id"], row["occurred_at"], text, before, after)
            )
    return DiffReport(len(rows), changes)

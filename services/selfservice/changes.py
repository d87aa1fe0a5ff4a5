"""What a customer changes on their pages, each an event on their own timeline saying who made
it (channel ``self_service``, kind ``form``): contact data, consent, an erasure request. The
event is published first (acknowledged by the broker), then the change is written at once, so
it holds in routing and in the outbound path without waiting for the processors, which apply
the event's consent statements again (the same statements: newest wins, so nothing moves)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg

from channels.base import Publisher
from schemas import Channel, ConsentChange, Direction, Identity, Interaction, Kind, Purpose
from services.customers import consent
from services.identity import profile

SOURCE = "services/selfservice"
CHANGED_BY = "the customer (self-service)"
#: Consent statements one event carries (the contract's limit).
CONSENT_PER_EVENT = 10


def _event(customer: dict[str, Any], subject: str, text: str, **fields: Any) -> Interaction:
    first = customer["identities"][0]
    return Interaction.create(
        channel=Channel.SELF_SERVICE,
        direction=Direction.INBOUND,
        kind=Kind.FORM,
        identities=[Identity(type=first["type"], scope=first["scope"], value=first["value"])],
        customer_id=uuid.UUID(customer["id"]),
        subject=subject,
        text=text,
        provider_message_id=f"self-service:{uuid.uuid4()}",
        source=SOURCE,
        attributes={"changed_by": CHANGED_BY},
        **fields,
    )


def _shown(value: Any) -> str:
    if value is None or value == "":
        return "(none)"
    return str(value)


async def correct_profile(
    pool: asyncpg.Pool,
    publisher: Publisher,
    customer: dict[str, Any],
    change: profile.ProfileUpdate,
) -> bool:
    """Set the fields that differ from the stored profile; False when nothing did."""
    current = customer.get("profile") or {}
    wanted = change.model_dump(mode="json", exclude_unset=True)
    differing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if not differing:
        return False
    lines = [
        f"{name.replace('_', ' ')}: {_shown(_flat(value))}" for name, value in differing.items()
    ]
    event = _event(customer, f"Contact details changed by {CHANGED_BY}", "\n".join(lines))
    await publisher.publish([event])
    async with pool.acquire() as conn:
        await profile.update(
            conn,
            event.customer_id or uuid.UUID(customer["id"]),
            profile.ProfileUpdate.model_validate(differing),
            event.occurred_at,
        )
    return True


def _flat(value: Any) -> Any:
    """An address list as one line each, for the event's text."""
    if isinstance(value, list):
        return "; ".join(
            ", ".join(
                p
                for p in [
                    *a.get("lines", []),
                    a.get("postal_code"),
                    a.get("city"),
                    a.get("country"),
                ]
                if p
            )
            for a in value
            if isinstance(a, dict)
        )
    return value


async def set_consent(
    pool: asyncpg.Pool,
    publisher: Publisher,
    customer: dict[str, Any],
    changes: Sequence[ConsentChange],
) -> None:
    """Publish the customer's consent statements, then store them."""
    events = [
        _event(
            customer,
            f"Consent changed by {CHANGED_BY}",
            "\n".join(
                f"{c.purpose.value} by {'every channel' if c.channel == '*' else c.channel}:"
                f" {'yes' if c.granted else 'no'}"
                for c in part
            ),
            consent=list(part),
        )
        for part in (
            changes[n : n + CONSENT_PER_EVENT] for n in range(0, len(changes), CONSENT_PER_EVENT)
        )
    ]
    if not events:
        return
    await publisher.publish(events)
    customer_id = uuid.UUID(customer["id"])
    async with pool.acquire() as conn:
        await consent.apply_changes(
            conn,
            [
                consent.ConsentWrite(customer_id, change, event.occurred_at, event.event_id)
                for event in events
                for change in event.consent
            ],
        )


class AlreadyRequested(Exception):
    """The customer's erasure request is already waiting for an admin."""


async def request_erasure(
    pool: asyncpg.Pool, publisher: Publisher, customer: dict[str, Any], reason: str
) -> None:
    """Record the request for an admin to confirm, and say so on the timeline."""
    customer_id = uuid.UUID(customer["id"])
    async with pool.acquire() as conn:
        pending = await conn.fetchval(
            "SELECT 1 FROM erasure_requests WHERE customer_id = $1 AND status = 'pending'",
            customer_id,
        )
    if pending:
        raise AlreadyRequested
    text = "The customer asked for their data to be erased; an admin confirms it."
    event = _event(customer, f"Erasure requested by {CHANGED_BY}", f"{text}\n{reason}".strip())
    await publisher.publish([event])
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO erasure_requests (id, customer_id, reason) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            uuid.uuid4(),
            customer_id,
            reason,
        )


def statement(channel: str, purpose: Purpose, granted: bool) -> ConsentChange:
    """One consent statement the customer made on the consent form."""
    return ConsentChange(
        channel=channel,
        purpose=purpose,
        granted=granted,
        reason=f"set by {CHANGED_BY}",
    )

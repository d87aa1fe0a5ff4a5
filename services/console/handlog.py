"""Interactions an agent logs by hand (a visit, a letter, a phone call): channel ``manual``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from schemas import Department, Direction, Identity, Interaction, Kind
from services.console.users import User

#: The channel of what agents log by hand: the console is its source, so it names it.
CHANNEL = "manual"
LABEL = "Logged by hand"
ICON = "✎"
KINDS = {"visit": Kind.VISIT, "letter": Kind.LETTER, "call": Kind.CALL, "note": Kind.NOTE}
SOURCE = "services/console"


def occurred(local: str, offset_minutes: str) -> datetime:
    """A ``datetime-local`` value and the browser's ``getTimezoneOffset()`` -> aware UTC time."""
    naive = datetime.fromisoformat(local)
    try:
        offset = int(offset_minutes or 0)
    except ValueError:
        offset = 0
    return (naive + timedelta(minutes=offset)).replace(tzinfo=UTC)


def interaction(
    customer_id: uuid.UUID,
    identity: Identity,
    kind: str,
    direction: str,
    at: datetime,
    summary: str,
    department: Department,
    user: User,
) -> Interaction:
    """The interaction to publish: it carries the customer id, so it lands on their timeline."""
    return Interaction.create(
        channel=CHANNEL,
        direction=Direction(direction),
        kind=KINDS[kind],
        occurred_at=at,
        identities=[identity],
        customer_id=customer_id,
        subject=f"{kind.capitalize()} logged by {user.username}",
        text=summary,
        provider_message_id=f"console:{uuid.uuid4()}",
        source=SOURCE,
        attributes={"department": department.value, "logged_by": user.username},
    )

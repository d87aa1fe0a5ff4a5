"""The one source of truth for topic names, partition counts, keys and record types."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from schemas.events import (
    CustomerEvent,
    DeliveryStatus,
    Department,
    Interaction,
    OutboundCommand,
    PeriodKey,
    RoutedEvent,
    StagedInput,
    UnifiedEvent,
)

PREFIX = "omnihub"


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, partitions, what its key is, and the model of its values."""

    name: str
    partitions: int
    key: str
    model: type[BaseModel] | None
    ce_type: str
    description: str


INTERACTIONS = TopicSpec(
    name=f"{PREFIX}.interactions.v1",
    partitions=8,
    key="bucket of the first identity's key (bucket:<4 hex digits>): one person's events in order",
    model=Interaction,
    ce_type="com.omnihub.interaction.v1",
    description="every interaction the channels received or sent, normalised",
)
UNIFIED = TopicSpec(
    name=f"{PREFIX}.unified.v1",
    partitions=8,
    key="customer id",
    model=UnifiedEvent,
    ce_type="com.omnihub.unified.v1",
    description=(
        "interactions whose customer is already known (replays, imports), written into the"
        " timeline and routed by the processors; the hub's own pipeline does not publish here"
    ),
)
OUTBOUND = TopicSpec(
    name=f"{PREFIX}.outbound.v1",
    partitions=8,
    key="customer id",
    model=OutboundCommand,
    ce_type="com.omnihub.outbound.v1",
    description="commands to send a message to a customer",
)
DELIVERY = TopicSpec(
    name=f"{PREFIX}.delivery.v1",
    partitions=8,
    key="command id; a provider's receipt not yet matched to its command: channel:provider id",
    model=DeliveryStatus,
    ce_type="com.omnihub.delivery.v1",
    description="delivery states of outbound messages",
)
SESSIONS = TopicSpec(
    name=f"{PREFIX}.sessions.v1",
    partitions=8,
    key="customer id",
    model=OutboundCommand,
    ce_type="com.omnihub.outbound.v1",
    description=(
        "outbound commands relayed by the dispatcher to the web processes holding the"
        " channel's client sessions (web chat); every such process reads all of it"
    ),
)
CUSTOMERS = TopicSpec(
    name=f"{PREFIX}.customers.v1",
    partitions=8,
    key="customer id",
    model=CustomerEvent,
    ce_type="com.omnihub.customer.v1",
    description="customer lifecycle: merged, split, deleted (tombstone)",
)
PERIOD_KEYS = TopicSpec(
    name=f"{PREFIX}.periodkeys.v1",
    partitions=1,
    key="period (a UTC day, YYYY-MM-DD)",
    model=PeriodKey,
    ce_type="com.omnihub.periodkey.v1",
    description=(
        "each period's public key, announced ahead by the hub: what the channel adapters seal"
        " raw records with (interactions, dead letters); the private keys never leave PostgreSQL"
    ),
)
STAGED = TopicSpec(
    name=f"{PREFIX}.staged.v1",
    partitions=8,
    key="bucket of the input's order key (bucket:<4 hex digits>): one sender's inputs in order",
    model=StagedInput,
    ce_type="com.omnihub.staged.v1",
    description=(
        "what an adapter took in before reading it (an email's raw message), sealed with its"
        " period's key: the sender is answered once it is here, and the processors hand it"
        " back to its adapter to become events (acknowledge fast, work later)"
    ),
)
DEADLETTER = TopicSpec(
    name=f"{PREFIX}.deadletter.v1",
    partitions=1,
    key="the original record's key",
    model=None,
    ce_type="com.omnihub.deadletter.v1",
    description="records that could not be used, with the reason in headers",
)


def routed_topic(department: Department) -> TopicSpec:
    """Return the topic a department consumes."""
    return TopicSpec(
        name=f"{PREFIX}.routed.{department.value}.v1",
        partitions=8,
        key="customer id",
        model=RoutedEvent,
        ce_type="com.omnihub.routed.v1",
        description=f"interactions routed to {department.value.replace('_', '-')}",
    )


ROUTED = {department: routed_topic(department) for department in Department}

ALL_TOPICS: tuple[TopicSpec, ...] = (
    INTERACTIONS,
    UNIFIED,
    OUTBOUND,
    DELIVERY,
    SESSIONS,
    CUSTOMERS,
    PERIOD_KEYS,
    STAGED,
    DEADLETTER,
    *ROUTED.values(),
)

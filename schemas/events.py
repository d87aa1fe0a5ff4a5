"""Versioned event models: interaction, unified, routed, outbound command, delivery status."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.identities import Identity, StorableDict, StorableStr
from schemas.ids import event_id_for, identity_bucket

SCHEMA_VERSION: Literal[1] = 1

MAX_TEXT = 100_000
MAX_SUBJECT = 998  # RFC 5322 line limit


#: Timestamps must carry a time zone (validated in pydantic's core, not in Python).
AwareDatetime = pydantic.AwareDatetime
#: Every string an event carries is a ``StorableStr`` (attribute keys and values included):
#: PostgreSQL cannot store NUL, so such an event is refused where it is built, naming the
#: field, instead of being accepted and then dead-lettered by the processors.
Scalar = StorableStr | int | float | bool | None


def utcnow() -> datetime:
    """Return the current time in UTC, time-zone aware."""
    return datetime.now(UTC)


class Channel(StrEnum):
    """Where an interaction happened."""

    EMAIL = "email"
    SMS = "sms"
    VOICE = "voice"
    WEBCHAT = "webchat"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    X = "x"
    TELEGRAM = "telegram"
    API = "api"
    MANUAL = "manual"
    #: What customers do on their self-service pages (/me): corrections, consent, requests.
    SELF_SERVICE = "self_service"


class Direction(StrEnum):
    """From the customer to us, or from us to the customer."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class Kind(StrEnum):
    """What sort of interaction it is."""

    MESSAGE = "message"
    CALL = "call"
    VOICEMAIL = "voicemail"
    STATUS = "status"
    VISIT = "visit"
    LETTER = "letter"
    NOTE = "note"
    FORM = "form"


class Department(StrEnum):
    """The departments interactions are routed to; triage takes what no rule takes."""

    SALES = "sales"
    MARKETING = "marketing"
    FINANCE = "finance"
    AFTER_SALES = "after_sales"
    TRIAGE = "triage"


class DeliveryState(StrEnum):
    """Delivery states of an outbound message, in the order they can only move forward."""

    QUEUED = "queued"
    REFUSED = "refused"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNDELIVERED = "undelivered"
    DELIVERED = "delivered"
    READ = "read"

    @property
    def rank(self) -> int:
        """Position in the forward-only order; a lower rank never replaces a higher one."""
        return _DELIVERY_RANK[self]


_DELIVERY_RANK = {
    DeliveryState.QUEUED: 0,
    DeliveryState.SENDING: 1,
    DeliveryState.SENT: 2,
    DeliveryState.REFUSED: 3,
    DeliveryState.FAILED: 3,
    DeliveryState.UNDELIVERED: 3,
    DeliveryState.DELIVERED: 4,
    DeliveryState.READ: 5,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Attachment(_Model):
    """Metadata of a file sent with an interaction; the bytes stay with the provider (``url``)
    or in the hub's blob store (``blob``), never in the event."""

    name: StorableStr | None = Field(default=None, max_length=255)
    content_type: StorableStr | None = Field(default=None, max_length=255)
    size: int | None = Field(default=None, ge=0)
    url: StorableStr | None = Field(default=None, max_length=2048)
    provider_id: StorableStr | None = Field(default=None, max_length=255)
    blob: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9]{1,3}$",
        description="the file in the hub's blob store: <event id>/<n>",
    )
    content_id: StorableStr | None = Field(
        default=None, max_length=255, description="what a cid: URL in the message's HTML names"
    )
    inline: bool = Field(default=False, description="shown inside the message, not as a file")


class Purpose(StrEnum):
    """Why we contact a customer: consent is given or withdrawn per channel and purpose."""

    SERVICE = "service"
    MARKETING = "marketing"


class ConsentChange(_Model):
    """A customer's own request carried by an interaction ("STOP", "unsubscribe", "START")."""

    channel: Channel | Literal["*"] = Field(description="the channel, or * for every channel")
    purpose: Purpose
    granted: bool
    reason: StorableStr = Field(default="", max_length=500)


class ThreadRef(_Model):
    """The conversation an interaction belongs to, as the channel names it."""

    id: StorableStr = Field(min_length=1, max_length=512)
    reply_to: StorableStr | None = Field(default=None, max_length=512)


class Revision(_Model):
    """What an interaction does to an earlier one of the same channel and customer instead of
    being a message of its own: the sender edited it (its text is the new version) or deleted
    it (unsent). Applied to the original on the timeline, the earlier version kept apart."""

    of: StorableStr = Field(
        min_length=1, max_length=512, description="the original's provider_message_id"
    )
    action: Literal["edit", "delete"]


class Interaction(_Model):
    """One interaction entering the hub from any channel, normalised (topic: interactions)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID
    channel: Channel
    direction: Direction
    kind: Kind
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    identities: list[Identity] = Field(min_length=1, max_length=20)
    thread: ThreadRef | None = None
    subject: StorableStr | None = Field(default=None, max_length=MAX_SUBJECT)
    text: StorableStr | None = Field(default=None, max_length=MAX_TEXT)
    language: StorableStr | None = Field(default=None, max_length=35)
    attachments: list[Attachment] = Field(default_factory=list, max_length=100)
    provider_message_id: StorableStr = Field(min_length=1, max_length=512)
    provider_ids: StorableDict[StorableStr] = Field(default_factory=dict)
    source: StorableStr = Field(
        default="", max_length=255, description="the adapter that received it"
    )
    customer_id: uuid.UUID | None = Field(
        default=None,
        description="set by the hub on what it sends: the customer the message was sent to",
    )
    delivery: DeliveryStatus | None = None
    consent: list[ConsentChange] = Field(default_factory=list, max_length=10)
    attributes: StorableDict[Scalar] = Field(default_factory=dict)
    revises: Revision | None = Field(
        default=None, description="an edit or deletion of an earlier message, not a new one"
    )

    @property
    def partition_key(self) -> bytes:
        """Kafka key: a bucket of the first identity, so one person's events stay in order
        while the key names nobody (the value is sealed; a bucket holds very many people)."""
        return identity_bucket(self.identities[0].key)

    @classmethod
    def create(cls, **fields: Any) -> Interaction:
        """Build an interaction whose event id is derived from channel and provider id (unless
        one is given: a client's own, ``client_event_id_for``)."""
        fields.setdefault("received_at", utcnow())
        fields.setdefault("occurred_at", fields["received_at"])
        if "event_id" not in fields:
            channel = Channel(fields["channel"])
            fields["event_id"] = event_id_for(channel.value, str(fields["provider_message_id"]))
        return cls.model_validate(fields)


#: The ``command_id`` of a ``DeliveryStatus`` a channel received from its provider (a status
#: callback) when the channel only knows the provider's message id. The processors replace it
#: with the command whose ``(channel, provider_message_id)`` the dispatcher recorded.
UNRESOLVED_COMMAND = uuid.UUID(int=0)


class DeliveryStatus(_Model):
    """A delivery state reported for an outbound message (topic: delivery)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: uuid.UUID
    channel: Channel
    state: DeliveryState
    occurred_at: AwareDatetime
    provider_message_id: StorableStr | None = Field(default=None, max_length=512)
    error_code: StorableStr | None = Field(default=None, max_length=64)
    error_message: StorableStr | None = Field(default=None, max_length=2000)
    undeliverable: Identity | None = Field(
        default=None,
        description="the address the provider says cannot receive at all (a hard bounce): "
        "the hub marks it undeliverable on the profile of the customer it was sent to",
    )

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the command, so one message's statuses stay in order (a receipt not yet
        matched to its command: the provider's id of the message, for the same reason)."""
        if self.command_id == UNRESOLVED_COMMAND:
            return f"{self.channel.value}:{self.provider_message_id or ''}".encode()
        return str(self.command_id).encode()


class UnifiedEvent(_Model):
    """An interaction attributed to one customer (topic: unified, keyed by customer id)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID
    customer_id: uuid.UUID
    unified_at: AwareDatetime
    interaction: Interaction

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the customer id."""
        return str(self.customer_id).encode()


class Routing(_Model):
    """Why an event went where it went."""

    department: Department
    priority: Literal["low", "normal", "high", "urgent"] = "normal"
    tags: list[StorableStr] = Field(default_factory=list)
    rule_id: StorableStr
    ruleset_version: StorableStr
    reason: StorableStr
    confidence: float | None = Field(default=None, ge=0, le=1)
    copy_of: Department | None = Field(
        default=None, description="set on a copy: the primary department of the event"
    )
    language: StorableStr | None = Field(
        default=None,
        max_length=35,
        description="the language rules matched in: the interaction's own, else detected "
        "(ISO 639-1); null when too short or ambiguous to tell",
    )


class RoutedEvent(_Model):
    """A unified event as a department receives it (topics: routed.<department>)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID
    customer_id: uuid.UUID
    routed_at: AwareDatetime
    routing: Routing
    interaction: Interaction

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the customer id."""
        return str(self.customer_id).encode()


class OutboundCommand(_Model):
    """A request to send a message to a customer on a channel (topic: outbound)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    command_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    customer_id: uuid.UUID
    channel: Channel
    to: Identity
    text: StorableStr = Field(min_length=1, max_length=MAX_TEXT)
    timeline_text: StorableStr | None = Field(
        default=None,
        max_length=MAX_TEXT,
        description="what the timeline keeps instead of the text (a sign-in link: not for agents)",
    )
    subject: StorableStr | None = Field(default=None, max_length=MAX_SUBJECT)
    in_reply_to: uuid.UUID | None = None
    thread: ThreadRef | None = None
    attachments: list[Attachment] = Field(
        default_factory=list, max_length=100, description="files from the hub's blob store"
    )
    requested_by: StorableStr = Field(default="", max_length=255)
    created_at: AwareDatetime = Field(default_factory=utcnow)
    attributes: StorableDict[Scalar] = Field(default_factory=dict)

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the customer id, so replies to one customer leave in order."""
        return str(self.customer_id).encode()


class CustomerEvent(_Model):
    """A change to who a customer is (topic: customers, keyed by customer id).

    ``customer.merged``: ``merged_ids`` now answer as aliases of ``customer_id``;
    ``customer.split``: ``new_ids`` were cut out of ``customer_id`` with ``identities``;
    ``customer.deleted``: a tombstone, consumers delete what they hold about ``customer_id``.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    type: Literal["customer.merged", "customer.split", "customer.deleted"]
    customer_id: uuid.UUID
    merged_ids: list[uuid.UUID] = Field(default_factory=list)
    new_ids: list[uuid.UUID] = Field(default_factory=list)
    identities: list[Identity] = Field(default_factory=list)
    reason: StorableStr = Field(default="", max_length=2000)
    caused_by: uuid.UUID | None = Field(default=None, description="the event that caused it")
    occurred_at: AwareDatetime = Field(default_factory=utcnow)

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the customer id."""
        return str(self.customer_id).encode()


class DeadLetter(_Model):
    """What the dead-letter topic's headers say about a record that could not be used."""

    source_topic: str
    partition: int
    offset: int
    error: str
    stage: str

    @model_validator(mode="after")
    def _bounded(self) -> DeadLetter:
        if len(self.error) > 4000:
            object.__setattr__(self, "error", self.error[:4000])
        return self


Interaction.model_rebuild()


class PeriodKey(_Model):
    """A period's public sealing key (topic: period keys): what the channel adapters seal the
    raw records of that period with (schemas/sealing.py's ``period`` scheme)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    period: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$", description="a UTC day")
    public_key: str = Field(
        pattern=r"^[A-Za-z0-9+/]{43}=$", description="raw X25519 public key, base64"
    )

    @property
    def partition_key(self) -> bytes:
        """Kafka key: the period (a period's key never changes, so any copy will do)."""
        return self.period.encode()


class StagedInput(_Model):
    """What a channel took in before reading it (an email's raw message), published as it
    came so the sender is answered as soon as it is durable; the processors hand it back to
    the adapter named here, which turns it into events (topic: staged)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    schema_version: Literal[1] = SCHEMA_VERSION
    stage_id: uuid.UUID = Field(default_factory=uuid.uuid4, description="this record's id")
    adapter: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,63}$", description="the registered adapter that reads it"
    )
    via: str = Field(
        max_length=300, description="how it arrived, for the adapter and the dead letters"
    )
    received_at: AwareDatetime = Field(default_factory=utcnow)
    order_key: str = Field(
        max_length=1000,
        description="what keeps one sender's inputs in order (an envelope sender); only its"
        " bucket is the record's key",
    )
    meta: dict[str, str] = Field(
        default_factory=dict,
        max_length=64,
        description="what the adapter knew on arrival that the payload does not say",
    )
    payload: bytes = Field(description="the bytes as they arrived (base64 in JSON)")
    blob: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f-]{36}/[0-9]+$",
        description="set when the bytes were too large for a record: the hub's blob store"
        " holds them under this id (deleted once read) and payload is empty",
    )

    @property
    def partition_key(self) -> bytes:
        """Kafka key: a bucket of ``order_key``, which names nobody."""
        return identity_bucket(self.order_key)

"""The JSON body of POST /v1/interactions."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas import (
    Attachment,
    Channel,
    ConsentChange,
    Direction,
    Identity,
    Kind,
    Revision,
    ThreadRef,
)
from schemas.events import MAX_SUBJECT, MAX_TEXT, Scalar
from schemas.identities import StorableDict, StorableStr


class InteractionRequest(BaseModel):
    """An interaction as another system (ERP, web form, script, agent) reports it. Its strings
    refuse NUL here already, as the Interaction it becomes does, so its schema says so too."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = Channel.API
    direction: Direction = Direction.INBOUND
    kind: Kind = Kind.MESSAGE
    identities: list[Identity] = Field(min_length=1, max_length=20)
    provider_message_id: StorableStr = Field(
        min_length=1,
        max_length=512,
        description=(
            "the sender's own id of this interaction; a retry with the same id is deduplicated"
        ),
    )
    occurred_at: AwareDatetime | None = None
    subject: StorableStr | None = Field(default=None, max_length=MAX_SUBJECT)
    text: StorableStr | None = Field(default=None, max_length=MAX_TEXT)
    language: StorableStr | None = Field(default=None, max_length=35)
    thread: ThreadRef | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=100)
    provider_ids: StorableDict[StorableStr] = Field(default_factory=dict)
    consent: list[ConsentChange] = Field(
        default_factory=list, max_length=10, description="consent the customer gave or withdrew"
    )
    attributes: StorableDict[Scalar] = Field(default_factory=dict)
    revises: Revision | None = Field(
        default=None,
        description=(
            "this edits or deletes the customer's earlier message on the same channel (its"
            " provider_message_id): applied to it on the timeline, not a new message"
        ),
    )


class Accepted(BaseModel):
    """The broker acknowledged the interaction."""

    event_id: str
    status: str = "accepted"

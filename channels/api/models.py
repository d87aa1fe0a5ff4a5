"""The JSON body of POST /v1/interactions."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas import Attachment, Channel, ConsentChange, Direction, Identity, Kind, ThreadRef
from schemas.events import MAX_SUBJECT, MAX_TEXT, Scalar


class InteractionRequest(BaseModel):
    """An interaction as another system (ERP, web form, script, agent) reports it."""

    model_config = ConfigDict(extra="forbid")

    channel: Channel = Channel.API
    direction: Direction = Direction.INBOUND
    kind: Kind = Kind.MESSAGE
    identities: list[Identity] = Field(min_length=1, max_length=20)
    provider_message_id: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "the sender's own id of this interaction; a retry with the same id is deduplicated"
        ),
    )
    occurred_at: AwareDatetime | None = None
    subject: str | None = Field(default=None, max_length=MAX_SUBJECT)
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    language: str | None = Field(default=None, max_length=35)
    thread: ThreadRef | None = None
    attachments: list[Attachment] = Field(default_factory=list, max_length=100)
    provider_ids: dict[str, str] = Field(default_factory=dict)
    consent: list[ConsentChange] = Field(
        default_factory=list, max_length=10, description="consent the customer gave or withdrew"
    )
    attributes: dict[str, Scalar] = Field(default_factory=dict)


class Accepted(BaseModel):
    """The broker acknowledged the interaction."""

    event_id: str
    status: str = "accepted"

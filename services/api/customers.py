"""Customer lookup, the unified timeline, and replies (outbound commands)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from channels.base import PublishError
from schemas import Channel, Identity
from schemas.events import MAX_SUBJECT, MAX_TEXT
from schemas.identities import StorableStr
from services.api.auth import Principal, Scope, require
from services.api.errors import answers, bus_unavailable
from services.customers import files, outbound, store, templates
from services.identity import manual

router = APIRouter(prefix="/v1/customers")
Reader = Annotated[Principal, Depends(require(Scope.CUSTOMERS_READ))]
#: What the routes of one customer answer when it is unknown (the generic answers, 401, 403,
#: 422, 503, are added to every route by services.api.openapi).
NOT_FOUND = answers({404: "no such customer"})


def _identity(text: str) -> Identity:
    try:
        return Identity.parse(text)
    except (ValueError, ValidationError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"identity must be type:value (e.g. email:alice@example.com): {exc}",
        ) from None


@router.get("")
async def find_customers(
    request: Request, principal: Reader, identity: Annotated[str, Query(min_length=3)]
) -> dict[str, Any]:
    """Find customers by one identity, e.g. ``?identity=email:alice@example.com``."""
    wanted = _identity(identity)
    async with request.app.state.pool.acquire() as conn:
        ids = await store.find_by_identity(conn, wanted)
        found = [await store.customer(conn, cid) for cid in ids]
    return {"identity": wanted.key, "customers": [c for c in found if c]}


@router.get("/{customer_id}", responses=NOT_FOUND)
async def get_customer(
    request: Request, principal: Reader, customer_id: uuid.UUID
) -> dict[str, Any]:
    """Return one customer and its identities."""
    async with request.app.state.pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return found


@router.get(
    "/{customer_id}/interactions/{event_id}/files/{index}",
    responses={
        **answers({404: "no such customer, interaction or file"}),
        200: {"content": {"application/octet-stream": {}}, "description": "the file"},
    },
    response_class=Response,
)
async def get_file(
    request: Request, principal: Reader, customer_id: uuid.UUID, event_id: uuid.UUID, index: int
) -> Response:
    """The ``index``-th file (from 1) of one of the customer's interactions, as listed in its
    ``attachments``, always as a download of its stored type."""
    async with request.app.state.pool.acquire() as conn:
        live = await manual.live_id(conn, customer_id)
    if live is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    attachment = files.attachment_of(await files.interaction_of(request, event_id, live), index)
    return files.file_response(await files.read_blob(request, attachment["blob"]), attachment)


@router.get("/{customer_id}/timeline", responses=NOT_FOUND)
async def get_timeline(
    request: Request,
    principal: Reader,
    customer_id: uuid.UUID,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """Return the customer's interactions across every channel, newest first."""
    async with request.app.state.pool.acquire() as conn:
        live = await manual.live_id(conn, customer_id)
        if live is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
        try:
            return await store.timeline_page(conn, live, limit, cursor)
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


class TemplateRequest(BaseModel):
    """A pre-approved template (WhatsApp's): sendable outside a channel's reply window."""

    model_config = ConfigDict(extra="forbid")

    # plain str: the patterns admit no NUL (StorableStr's own pattern would replace them)
    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    language: str = Field(default="en_US", pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")
    parameters: list[StorableStr] = Field(default_factory=list, max_length=20)


class ReplyRequest(BaseModel):
    """A message to send to the customer: a text, or a template where the channel has them."""

    # the schema says what the validator below checks: a text or a template, not null
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "anyOf": [
                {"required": ["text"], "properties": {"text": {"type": "string"}}},
                {"required": ["template"], "properties": {"template": {"type": "object"}}},
            ]
        },
    )

    channel: Channel
    text: StorableStr | None = Field(default=None, min_length=1, max_length=MAX_TEXT)
    template: TemplateRequest | None = None
    subject: StorableStr | None = Field(default=None, max_length=MAX_SUBJECT)
    to: Identity | None = None
    in_reply_to: uuid.UUID | None = None

    @model_validator(mode="after")
    def _something(self) -> ReplyRequest:
        if self.text is None and self.template is None:
            raise ValueError("give a text or a template")
        return self


@router.post(
    "/{customer_id}/messages",
    status_code=status.HTTP_202_ACCEPTED,
    responses=answers(
        {
            404: "no such customer",
            503: "PostgreSQL is unavailable, or the broker did not acknowledge; retry",
        }
    ),
)
async def send_message(
    request: Request,
    principal: Annotated[Principal, Depends(require(Scope.MESSAGES_SEND))],
    customer_id: uuid.UUID,
    reply: ReplyRequest,
) -> dict[str, str]:
    """Queue a message to the customer; the dispatcher sends it and reports its status (a
    channel's reply window is checked there: outside it, the state says why)."""
    attributes = None
    if reply.template is not None:
        template = reply.template
        try:
            attributes = templates.template_attributes(
                template.name, template.language, template.parameters
            )
        except ValueError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    try:
        command = await outbound.queue_message(
            request.app.state.pool,
            request.app.state.producer,
            customer_id,
            channel=reply.channel,
            text=reply.text or templates.template_text(attributes or {}),
            attributes=attributes,
            subject=reply.subject,
            to=reply.to,
            in_reply_to=reply.in_reply_to,
            requested_by=f"{principal.role}:{principal.name or principal.token_id}",
        )
    except outbound.NoSuchCustomer:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer") from None
    except outbound.NoRecipient as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    except PublishError:
        raise bus_unavailable() from None
    return {"command_id": str(command.command_id), "status": "queued"}

"""The identity API: why identities are linked, split, link and unlink, merge, profile."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field

from channels.base import PublishError
from schemas import CustomerEvent, Identity
from schemas.events import utcnow
from schemas.identities import StorableStr
from services.api.auth import Principal, Scope, require
from services.api.errors import answers, bus_unavailable
from services.identity import manual, profile, views
from services.keys.seal import customer_event_records

router = APIRouter(prefix="/v1/customers")
Reader = Annotated[Principal, Depends(require(Scope.CUSTOMERS_READ))]
Agent = Annotated[Principal, Depends(require(Scope.IDENTITY_WRITE))]

#: Why a change was made, kept in the link log (no NUL: PostgreSQL cannot store it).
Reason = Annotated[StorableStr, Field(min_length=3, max_length=2000)]

#: What the routes answer besides success and the generic answers (401, 403, 422, 503, added
#: to every route by services.api.openapi).
NOT_FOUND = answers({404: "no such customer"})
CONFLICT = answers(
    {
        409: "no such customer, or the change cannot be made as asked (the reason)",
        503: "PostgreSQL is unavailable, or saved but the customers topic did not acknowledge;"
        " retry",
    }
)


def actor(principal: Principal) -> str:
    """How the link log names who decided."""
    return f"{principal.role}:{principal.name or principal.token_id}"


async def _live(request: Request, customer_id: uuid.UUID) -> uuid.UUID:
    async with request.app.state.pool.acquire() as conn:
        live = await manual.live_id(conn, customer_id)
    if live is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return live


async def publish(request: Request, event: CustomerEvent) -> None:
    """Tell downstream consumers; the change is already committed, so a failure is a 503."""
    records = await customer_event_records(request.app.state.pool, [event], "services/api")
    try:
        await request.app.state.producer.send_all(records)
    except PublishError:
        raise bus_unavailable(
            "saved, but the customers topic did not acknowledge the event; retry"
        ) from None


@router.get("/{customer_id}/identities", responses=NOT_FOUND)
async def get_identities(
    request: Request,
    principal: Reader,
    customer_id: uuid.UUID,
    history: bool = False,
) -> dict[str, Any]:
    """Each identity of the customer and why it is linked (``?history=true``: the log)."""
    live = await _live(request, customer_id)
    async with request.app.state.pool.acquire() as conn:
        found: dict[str, Any] = {
            "customer_id": str(live),
            "identities": await views.identities(conn, live),
        }
        if history:
            found["history"] = await views.history(conn, live)
    return found


class SplitRequest(BaseModel):
    """Identities to cut out of a customer, and why."""

    model_config = ConfigDict(extra="forbid")

    identities: list[Identity] = Field(min_length=1, max_length=100)
    reason: Reason


def _conflict(exc: manual.ManualError) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, str(exc))


@router.post("/{customer_id}/split", responses=CONFLICT)
async def split(
    request: Request, principal: Agent, customer_id: uuid.UUID, body: SplitRequest
) -> dict[str, Any]:
    """Real unmerge: move identities (and their events) to the customer they belong to."""
    return await _split(request, customer_id, body.identities, body.reason, principal, "split")


async def _split(
    request: Request,
    customer_id: uuid.UUID,
    identities: list[Identity],
    reason: str,
    principal: Principal,
    action: str,
) -> dict[str, Any]:
    """Split (or unlink) in the database, then publish customer.split."""
    async with request.app.state.pool.acquire() as conn:
        try:
            event = await manual.split(
                conn, customer_id, identities, reason, actor(principal), action=action
            )
        except manual.ManualError as exc:
            raise _conflict(exc) from None
    await publish(request, event)
    return {"customer_id": str(event.customer_id), "new_ids": [str(i) for i in event.new_ids]}


class LinkRequest(BaseModel):
    """Attach an identity to a customer, or detach it, by hand."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["link", "unlink"] = "link"
    identity: Identity
    reason: Reason


@router.post("/{customer_id}/links", responses=CONFLICT)
async def links(
    request: Request, principal: Agent, customer_id: uuid.UUID, body: LinkRequest
) -> dict[str, Any]:
    """Manual link or unlink; these take precedence over the automatic rules."""
    if body.action == "unlink":
        return await _split(
            request, customer_id, [body.identity], body.reason, principal, "manual_unlink"
        )
    async with request.app.state.pool.acquire() as conn:
        try:
            taken_from = await manual.link(
                conn, customer_id, body.identity, body.reason, actor(principal)
            )
        except manual.ManualError as exc:
            raise _conflict(exc) from None
        return {
            "customer_id": str(await manual.live_id(conn, customer_id)),
            "taken_from": str(taken_from) if taken_from else None,
        }


class MergeRequest(BaseModel):
    """Another customer to merge into this one, and why."""

    model_config = ConfigDict(extra="forbid")

    other: uuid.UUID
    reason: Reason


@router.post("/{customer_id}/merge", responses=CONFLICT)
async def merge(
    request: Request, principal: Agent, customer_id: uuid.UUID, body: MergeRequest
) -> dict[str, Any]:
    """Merge ``other`` into this customer by hand (overrides protection rules)."""
    async with request.app.state.pool.acquire() as conn:
        try:
            event = await manual.merge(
                conn,
                customer_id,
                body.other,
                body.reason,
                actor(principal),
                request.app.state.identity_rules,
            )
        except manual.ManualError as exc:
            raise _conflict(exc) from None
    await publish(request, event)
    return {"customer_id": str(event.customer_id), "merged_ids": [str(body.other)]}


@router.patch("/{customer_id}/profile", responses=NOT_FOUND)
async def update_profile(
    request: Request, principal: Agent, customer_id: uuid.UUID, body: profile.ProfileUpdate
) -> dict[str, Any]:
    """Set profile fields (name, birth date, language, preferred channel, addresses ...)."""
    live = await _live(request, customer_id)
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT 1 FROM customers WHERE id = $1 FOR UPDATE", live)
        await profile.update(conn, live, body, utcnow())
        found = await profile.read(conn, live)
    assert found is not None
    return {"customer_id": str(live), "field_times": found["field_times"]}

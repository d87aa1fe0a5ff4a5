"""POST /v1/interactions: the API channel's inbound door."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel

from channels.base import (
    ParseError,
    PayloadTooLarge,
    PublishError,
    UnsupportedMediaType,
)
from channels.base.http import inbound_request
from services.api.auth import Principal, Role, require
from services.api.errors import bus_unavailable

router = APIRouter()


class Accepted(BaseModel):
    """The broker acknowledged the interaction."""

    event_id: str
    status: str = "accepted"


@router.post("/v1/interactions", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def post_interaction(
    request: Request,
    principal: Annotated[Principal, Depends(require(Role.INTEGRATION, Role.AGENT))],
) -> Accepted:
    """Validate and publish one interaction; 202 only after the broker's acknowledgement."""
    adapter = request.app.state.api_adapter
    inbound = await inbound_request(request)
    try:
        adapter.verify(inbound)
        interactions = adapter.parse(inbound)
    except PayloadTooLarge as exc:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
    except UnsupportedMediaType as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    except ParseError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, exc.details or str(exc)
        ) from None
    try:
        await request.app.state.publisher.publish(interactions)
    except PublishError:
        raise bus_unavailable() from None
    return Accepted(event_id=str(interactions[0].event_id))

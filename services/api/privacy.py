"""Privacy endpoints: export everything held about a customer (privacy:export); delete it
(privacy:delete, admin tokens by default)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, status

from channels.base import PublishError
from schemas.identities import StorableStr
from services.api.auth import Principal, Scope, require
from services.api.errors import answers, bus_unavailable
from services.api.identity import actor
from services.identity.manual import ManualError
from services.privacy import service
from services.privacy.erase import NotFound

router = APIRouter(prefix="/v1/customers")


@router.get("/{customer_id}/export", responses=answers({404: "no such customer"}))
async def export_customer(
    request: Request,
    principal: Annotated[Principal, Depends(require(Scope.PRIVACY_EXPORT))],
    customer_id: uuid.UUID,
) -> dict[str, Any]:
    """Everything the hub holds about the customer, as JSON (the export is logged)."""
    document = await service.export_customer(request.app.state.pool, customer_id, actor(principal))
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return document


@router.delete(
    "/{customer_id}",
    responses=answers(
        {
            404: "no such customer",
            409: "the customer changed meanwhile (merged or split); call again",
            503: "PostgreSQL is unavailable, or deleted but the customers topic did not"
            " acknowledge the tombstone; call again",
        }
    ),
)
async def delete_customer(
    request: Request,
    principal: Annotated[Principal, Depends(require(Scope.PRIVACY_DELETE))],
    customer_id: uuid.UUID,
    reason: Annotated[StorableStr, Body(embed=True, min_length=3, max_length=2000)],
) -> dict[str, Any]:
    """Delete the customer's data and publish a ``customer.deleted`` tombstone.

    ``{"reason": "..."}`` is required; it is logged with personal data masked. Repeating the
    call on a deleted customer re-publishes the tombstone.
    """
    try:
        event = await service.delete_customer(
            request.app.state.pool,
            request.app.state.producer,
            customer_id,
            reason,
            actor(principal),
            request.app.state.blobs,
        )
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer") from None
    except ManualError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except PublishError:
        raise bus_unavailable(
            "deleted, but the customers topic did not acknowledge the tombstone; call again"
        ) from None
    return {
        "customer_id": str(event.customer_id),
        "status": "deleted",
        "tombstone": str(event.event_id),
    }

"""Customers' erasure requests from the self-service pages, which an admin confirms (the
customer is deleted as the customer page's delete does) or declines."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import Response

from channels.base import PublishError
from services.console.guard import Actor, at_least
from services.console.render import page, redirect
from services.console.users import ConsoleRole
from services.identity import manual
from services.privacy import service
from services.privacy.erase import NotFound

router = APIRouter(prefix="/console/admin/erasure-requests")


async def pending(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """The requests waiting for an admin, oldest first."""
    rows = await conn.fetch(
        "SELECT r.id, r.customer_id, r.requested_at, r.reason, p.name"
        " FROM erasure_requests r LEFT JOIN customer_profiles p ON p.customer_id = r.customer_id"
        " WHERE r.status = 'pending' ORDER BY r.requested_at"
    )
    return [dict(r) for r in rows]


async def _request(conn: asyncpg.Connection, request_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT customer_id FROM erasure_requests WHERE id = $1 AND status = 'pending'",
        request_id,
    )


@router.post("/{request_id}/confirm")
async def confirm(request: Request, session: Actor, request_id: uuid.UUID) -> Response:
    """Delete the customer who asked (admins only); the privacy log says it was their request."""
    at_least(session, ConsoleRole.ADMIN)
    async with request.app.state.pool.acquire() as conn:
        found = await _request(conn, request_id)
    if found is None:
        return page(request, "error.html", status_code=404, message="No such open request.")
    try:
        await service.delete_customer(
            request.app.state.pool,
            request.app.state.producer,
            found["customer_id"],
            f"the customer's own request {request_id} (self-service)",
            session.user.actor,
            request.app.state.blobs,
        )
    except (NotFound, manual.ManualError) as exc:
        return page(request, "error.html", status_code=409, message=f"Cannot delete: {exc}")
    except PublishError:
        message = "The event bus did not acknowledge; nothing was deleted. Try again."
        return page(request, "error.html", status_code=503, message=message)
    return redirect("/console/admin?notice=deleted")


@router.post("/{request_id}/decline")
async def decline(request: Request, session: Actor, request_id: uuid.UUID) -> Response:
    """Keep the customer (e.g. records the law requires); the request is closed as declined."""
    at_least(session, ConsoleRole.ADMIN)
    async with request.app.state.pool.acquire() as conn:
        closed = await conn.fetchval(
            "UPDATE erasure_requests SET status = 'declined', decided_by = $2, decided_at = now()"
            " WHERE id = $1 AND status = 'pending' RETURNING id",
            request_id,
            session.user.actor,
        )
    if closed is None:
        return page(request, "error.html", status_code=404, message="No such open request.")
    return redirect("/console/admin")

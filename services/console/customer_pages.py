"""Customer search, the customer page (timeline, reply, log, profile) and its live feed."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import JSONResponse, Response, StreamingResponse

from schemas import Channel, Department
from services.console import handlog, live, reply, search, timeline, window
from services.console.guard import Viewer
from services.console.render import SECURITY_HEADERS, page, redirect
from services.console.sessions import Session
from services.console.users import ConsoleRole
from services.customers import consent, store
from services.identity import manual, views

router = APIRouter(prefix="/console")


@router.get("/search")
async def search_page(request: Request, session: Viewer, q: str = "") -> Response:
    """Find customers by name, email, phone or any identity."""
    try:
        async with request.app.state.pool.acquire() as conn:
            found = await search.search(conn, q)
    except search.Unsearchable as exc:
        return page(request, "error.html", status_code=400, message=str(exc))
    if len(found) == 1 and q:
        return redirect(f"/console/customers/{found[0]['id']}")
    results = [{"id": c["id"], "name": search.display_name(c), **c} for c in found]
    return page(request, "search.html", q=q, results=results)


def sendable_channels(request: Request) -> set[Channel]:
    """The channels some adapter of this process sends on."""
    return {c for a in request.app.state.adapters.values() for c in a.channels}


async def customer_page(
    request: Request,
    session: Session,
    customer_id: uuid.UUID,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    """Render the customer page (also after a failed action, with its error)."""
    async with request.app.state.pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
        if found is None:
            return page(request, "error.html", status_code=404, message="No such customer.")
        live_id = uuid.UUID(found["id"])
        if live_id != customer_id:  # a merged-away id: show the survivor
            return redirect(f"/console/customers/{live_id}")
        conversations = await timeline.load(
            conn, live_id, deleted_text=session.user.role is ConsoleRole.ADMIN
        )
        book = await consent.load(conn, [live_id])
        why = await views.identities(conn, live_id)
        windows = await window.states(conn, live_id, datetime.now(UTC), list(Channel))
    replying_to = timeline.find_item(conversations, request.query_params.get("reply_to", ""))
    profile = found["profile"] or {}
    used = timeline.channels_used(conversations)
    options = reply.options(
        live_id,
        found["identities"],
        book,
        sendable_channels(request),
        used,
        profile.get("preferred_channel"),
        replying_to,
        windows,
    )
    return page(
        request,
        "customer.html",
        status_code=status_code,
        error=error,
        customer=found,
        name=search.display_name(found),
        conversations=conversations,
        options=options,
        replying_to=replying_to,
        # the windows of the channels the customer wrote on, for the page's header
        windows=[w for c, w in windows.items() if c.value in used],
        template_form=any(o.template_only for o in options),
        identities=why,
        consents=consent_table(found["consents"]),
        departments=[d.value for d in Department],
        default_department=(session.user.departments or (Department.TRIAGE,))[0].value,
        kinds=list(handlog.KINDS),
        is_admin=session.user.role is ConsoleRole.ADMIN,
        can_export=session.user.role.at_least(ConsoleRole.SUPERVISOR),
    )


def consent_table(statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consent statements per channel and purpose (unlisted: granted by default)."""
    return sorted(statements, key=lambda s: (s["channel"], s["purpose"]))


@router.get("/customers/{customer_id}")
async def customer(request: Request, session: Viewer, customer_id: uuid.UUID) -> Response:
    """The customer page."""
    return await customer_page(request, session, customer_id)


async def _live(request: Request, customer_id: uuid.UUID) -> uuid.UUID:
    async with request.app.state.pool.acquire() as conn:
        found = await manual.live_id(conn, customer_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return found


@router.get("/customers/{customer_id}/timeline.json")
async def timeline_json(request: Request, session: Viewer, customer_id: uuid.UUID) -> Response:
    """The timeline the page shows, for the page's script to reconcile with."""
    live_id = await _live(request, customer_id)
    async with request.app.state.pool.acquire() as conn:
        conversations = await timeline.load(
            conn, live_id, deleted_text=session.user.role is ConsoleRole.ADMIN
        )
    return JSONResponse(
        {"customer_id": str(live_id), "conversations": [c.as_json() for c in conversations]},
        headers=SECURITY_HEADERS,
    )


@router.get("/customers/{customer_id}/events")
async def events(request: Request, session: Viewer, customer_id: uuid.UUID) -> Response:
    """Server-sent events: a notification whenever the customer's timeline changes."""
    live_id = await _live(request, customer_id)
    feed: live.TimelineFeed = request.app.state.console.feed
    return StreamingResponse(
        live.stream(feed, str(live_id)),
        media_type="text/event-stream",
        headers={**SECURITY_HEADERS, "X-Accel-Buffering": "no"},
    )

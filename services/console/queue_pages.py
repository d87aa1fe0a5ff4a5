"""Department queues: the list, and claim / assign / done."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from schemas import Department
from services.console import queue, users
from services.console.forms import read_form
from services.console.guard import Actor, Forbidden, Viewer
from services.console.render import page, redirect

router = APIRouter(prefix="/console")


def _department(session: Viewer, name: str) -> Department:
    try:
        department = Department(name)
    except ValueError:
        raise Forbidden("no such department") from None
    if not session.user.can_see(department):
        raise Forbidden("this queue belongs to another department")
    return department


@router.get("")
async def home(session: Viewer) -> Response:
    """The first queue the user works."""
    visible = [d for d in Department if session.user.can_see(d)]
    return redirect(f"/console/queues/{visible[0].value}" if visible else "/console/search")


@router.get("/queues/{name}")
async def queue_page(request: Request, session: Viewer, name: str, view: str = "open") -> Response:
    """A department's routed interactions, newest first."""
    department = _department(session, name)
    view = view if view in queue.FILTERS else "open"
    async with request.app.state.pool.acquire() as conn:
        items = await queue.listing(conn, department, view, session.user)
        counts = await queue.counts(conn)
        assignable = (
            await users.agents_of(conn, department)
            if session.user.role.at_least(users.ConsoleRole.SUPERVISOR)
            else []
        )
    return page(
        request,
        "queue.html",
        department=department.value,
        departments=[d.value for d in Department if session.user.can_see(d)],
        counts=counts,
        view=view,
        items=items,
        assignable=assignable,
        error=None,
    )


async def _act(
    request: Request, session: Actor, name: str, event_id: uuid.UUID, what: str
) -> Response:
    department = _department(session, name)
    form = await read_form(request)
    try:
        async with request.app.state.pool.acquire() as conn:
            if what == "claim":
                await queue.claim(conn, event_id, session.user)
            elif what == "done":
                await queue.done(conn, event_id, session.user)
            else:
                await queue.assign(conn, event_id, uuid.UUID(form.text("assignee")), session.user)
    except PermissionError as exc:
        raise Forbidden(str(exc)) from None
    except (queue.QueueError, ValueError) as exc:
        return page(request, "error.html", status_code=409, message=str(exc))
    view = form.text("view") if form.text("view") in queue.FILTERS else "open"
    notice = {"claim": "claimed", "done": "done", "assign": "assigned"}[what]
    return redirect(f"/console/queues/{department.value}?view={view}&notice={notice}")


@router.post("/queues/{name}/items/{event_id}/claim")
async def claim(request: Request, session: Actor, name: str, event_id: uuid.UUID) -> Response:
    """Take the interaction."""
    return await _act(request, session, name, event_id, "claim")


@router.post("/queues/{name}/items/{event_id}/done")
async def done(request: Request, session: Actor, name: str, event_id: uuid.UUID) -> Response:
    """Close the interaction."""
    return await _act(request, session, name, event_id, "done")


@router.post("/queues/{name}/items/{event_id}/assign")
async def assign(request: Request, session: Actor, name: str, event_id: uuid.UUID) -> Response:
    """Give the interaction to someone (supervisors and admins)."""
    return await _act(request, session, name, event_id, "assign")

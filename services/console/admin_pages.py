"""The admin page: console users and the privacy log (admins only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console import erasure_requests, throttle, users
from services.console.guard import Viewer, at_least
from services.console.render import page
from services.privacy import log

router = APIRouter(prefix="/console")


@router.get("/admin")
async def admin(request: Request, session: Viewer) -> Response:
    """Users (create them with `omnihub user create`), customers' erasure requests, recent
    sign-ins and privacy actions."""
    at_least(session, users.ConsoleRole.ADMIN)
    async with request.app.state.pool.acquire() as conn:
        found = await users.listing(conn)
        entries = await log.entries(conn, None, 100)
        signins = await throttle.events(conn, 100)
        erasures = await erasure_requests.pending(conn)
    return page(
        request, "admin.html", users=found, entries=entries, signins=signins, erasures=erasures
    )

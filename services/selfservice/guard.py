"""Who is asking on /me: the customer's session behind its own cookie, and CSRF checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from services.console.forms import read_form
from services.selfservice import sessions
from services.selfservice.sessions import CustomerSession

CSRF_FIELD = "csrf"


class NotSignedIn(Exception):
    """No live customer session: pages send the browser to the sign-in form."""


async def signed_in(request: Request) -> CustomerSession:
    """Dependency of every self-service page."""
    cookie = request.cookies.get(sessions.COOKIE)
    found = None
    if cookie:
        async with request.app.state.pool.acquire() as conn:
            found = await sessions.find(conn, cookie)
    if found is None:
        raise NotSignedIn
    request.state.me = found
    return found


async def acting(request: Request) -> CustomerSession:
    """Dependency of every change: a session and its CSRF token in the form."""
    found = await signed_in(request)
    if not found.csrf_ok((await read_form(request)).get(CSRF_FIELD)):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return found


Customer = Annotated[CustomerSession, Depends(signed_in)]
Acting = Annotated[CustomerSession, Depends(acting)]

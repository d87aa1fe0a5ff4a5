"""Who is asking: the session behind the cookie, CSRF checks, and role checks."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request, status

from services.console import sessions
from services.console.forms import read_form
from services.console.sessions import Session
from services.console.users import ConsoleRole

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


class SignInRequired(Exception):
    """No valid session: pages redirect to sign-in, feeds answer 401."""


class Forbidden(Exception):
    """Signed in, but the role or department does not allow this (403)."""


async def session_of(request: Request) -> Session | None:
    """The request's live session, looked up once per request."""
    if hasattr(request.state, "session"):
        found: Session | None = request.state.session
        return found
    cookie = request.cookies.get(sessions.COOKIE)
    found = None
    if cookie:
        async with request.app.state.pool.acquire() as conn:
            found = await sessions.find(conn, cookie)
    request.state.session = found
    return found


async def signed_in(request: Request) -> Session:
    """Dependency of every console page and action."""
    found = await session_of(request)
    if found is None:
        raise SignInRequired
    return found


async def acting(request: Request) -> Session:
    """Dependency of every state-changing request: a session and its CSRF token."""
    found = await signed_in(request)
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        presented = (await read_form(request)).get(CSRF_FIELD)
    if not found.csrf_ok(presented):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")
    return found


def at_least(session: Session, role: ConsoleRole) -> None:
    """Raise Forbidden unless the session's user has ``role`` (or a higher one)."""
    if not session.user.role.at_least(role):
        raise Forbidden(f"this needs the {role.value} role")


def sign_in_url(request: Request) -> str:
    """Where an unauthenticated page request is sent, coming back afterwards."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/console/sign-in?next={quote(target, safe='')}"


Viewer = Annotated[Session, Depends(signed_in)]
Actor = Annotated[Session, Depends(acting)]

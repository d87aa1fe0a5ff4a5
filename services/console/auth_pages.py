"""Sign-in and sign-out pages."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import Response

from services.console import sessions, throttle, users
from services.console.forms import read_form
from services.console.guard import Actor, Viewer
from services.console.render import page, redirect

router = APIRouter()
#: Login CSRF: the sign-in form carries the value of this short-lived cookie (double submit).
PRE_COOKIE = "omnihub_signin"


def safe_next(target: str | None) -> str:
    """Only console paths on this site (never //elsewhere or a scheme)."""
    if target and target.startswith("/console") and not target.startswith("//"):
        return target
    return "/console"


def set_cookie(
    response: Response,
    request: Request,
    name: str,
    value: str,
    max_age: int,
    path: str = "/console",
) -> None:
    """HttpOnly, SameSite=Strict, only below ``path``; Secure when OMNIHUB_PUBLIC_URL is https
    (the customers' pages use it too, below /me)."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        httponly=True,
        samesite="strict",
        secure=request.app.state.console.secure_cookies,
        path=path,
    )


def _form(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(
        request,
        "sign_in.html",
        status_code=status_code,
        error=error,
        pre_token=token,
        next=safe_next(request.query_params.get("next")),
    )
    set_cookie(response, request, PRE_COOKIE, token, 3600)
    return response


@router.get("/console/sign-in")
async def sign_in_page(request: Request) -> Response:
    """The sign-in form."""
    return _form(request)


def client_address(request: Request) -> str:
    """The sign-in's source address: the connection's peer as uvicorn reports it (uvicorn
    takes it from X-Forwarded-For only when the peer is in FORWARDED_ALLOW_IPS, by default
    loopback; omnihub has no trusted-proxy setting of its own)."""
    return request.client.host if request.client else "unknown"


@router.post("/console/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the password (throttled per username and address), open a session, set its
    cookie. Every outcome is recorded in console_signin_events."""
    form = await read_form(request)
    expected = request.cookies.get(PRE_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, form.get("pre_token", "")):
        return _form(request, "Your sign-in form expired; please try again.", 403)
    unstorable = form.unstorable()
    if unstorable:
        return _form(request, unstorable, 422)
    username = form.text("username")[:100]
    source = client_address(request)
    async with request.app.state.pool.acquire() as conn:
        verdict = await throttle.attempt(conn, username, source)
        if not verdict.allowed:
            await throttle.record(conn, username, source, "throttled")
            wait = verdict.wait_seconds
            response = _form(
                request,
                f"Too many failed sign-ins from your address; wait {wait} second"
                f"{'' if wait == 1 else 's'} and try again.",
                429,
            )
            response.headers["Retry-After"] = str(wait)
            return response
        user = await users.check_password(conn, username, form.get("password", ""))
        if user is None:
            await throttle.record(conn, username, source, "failure")
            return _form(request, "Wrong username or password.", 401)
        await throttle.succeeded(conn, username, source)
        await throttle.record(conn, username, source, "success")
        session_id = await sessions.open_session(conn, user.id)
    response = redirect(safe_next(form.get("next")))
    set_cookie(response, request, sessions.COOKIE, session_id, sessions.LIFETIME_HOURS * 3600)
    response.delete_cookie(PRE_COOKIE, path="/console")
    return response


@router.get("/console/presence.json")
async def presence(session: Viewer) -> Response:
    """The console's heartbeat: looking the session up marks its agent present
    (services/presence.py); nothing else to say."""
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


@router.post("/console/sign-out")
async def sign_out(request: Request, session: Actor) -> Response:
    """End the session here and in the browser."""
    async with request.app.state.pool.acquire() as conn:
        await sessions.close_session(conn, request.cookies.get(sessions.COOKIE, ""))
    response = redirect("/console/sign-in?notice=signed_out")
    response.delete_cookie(sessions.COOKIE, path="/console")
    return response

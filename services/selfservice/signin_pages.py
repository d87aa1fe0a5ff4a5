"""Signing in by a one-time link: ask for it by address, open it, confirm, sign out.

Opening a link shows a button that posts it: mail scanners that fetch every link in a message
cannot use it up, and the token leaves the URL before anything else loads."""

from __future__ import annotations

import hmac
import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from channels.base import PublishError
from services.console.auth_pages import client_address
from services.console.auth_pages import set_cookie as console_cookie
from services.console.forms import read_form
from services.customers import outbound
from services.selfservice import links, sessions
from services.selfservice.guard import Acting
from services.selfservice.render import page, redirect

log = logging.getLogger(__name__)
router = APIRouter(prefix="/me")

#: Login CSRF: the forms before a session carry this short-lived cookie's value.
PRE_COOKIE = "omnihub_me_pre"
#: The link page's token must not leak to what the page loads.
NO_REFERRER = {"Referrer-Policy": "no-referrer"}


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    """The console's cookie flags, below /me."""
    console_cookie(response, request, name, value, max_age, path="/me")


def _with_pre_token(
    request: Request, template: str, status_code: int = 200, **context: object
) -> Response:
    token = links.new_form_token()
    response = page(
        request, template, status_code=status_code, headers=NO_REFERRER, pre_token=token, **context
    )
    set_cookie(response, request, PRE_COOKIE, token, 3600)
    return response


def _pre_token_ok(request: Request, presented: str) -> bool:
    expected = request.cookies.get(PRE_COOKIE, "")
    return bool(expected) and hmac.compare_digest(expected, presented)


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    """Ask for a sign-in link."""
    return _with_pre_token(request, "sign_in.html")


@router.post("/sign-in")
async def ask_for_link(request: Request) -> Response:
    """Send a link to the address if a customer holds it; the same answer either way."""
    form = await read_form(request)
    if not _pre_token_ok(request, form.get("pre_token", "")):
        return _with_pre_token(request, "sign_in.html", 403, error="The form expired; try again.")
    address = links.address_of(form.get("address", ""))
    if address is None:
        error = "Give an email address, or a phone number with its country code (+44 …)."
        return _with_pre_token(request, "sign_in.html", 422, error=error)
    try:
        async with request.app.state.pool.acquire() as conn:
            link = await links.request_link(conn, address, client_address(request))
    except links.Throttled:
        response = _with_pre_token(
            request,
            "sign_in.html",
            429,
            error="Too many links were asked for; wait an hour and try again.",
        )
        response.headers["Retry-After"] = str(links.WINDOW_MINUTES * 60)
        return response
    if link is not None:
        base = request.app.state.links_base.rstrip("/")
        try:
            await outbound.queue_message(
                request.app.state.pool,
                request.app.state.producer,
                link.customer_id,
                channel=link.channel,
                to=link.to,
                subject="Your sign-in link",
                text=(
                    f"Sign in to see your messages and settings with us: {base}/me/link/"
                    f"{link.token}\nThe link works once, within {links.LINK_MINUTES} minutes."
                    " If you did not ask for it, ignore this message."
                ),
                timeline_text="A sign-in link to the self-service pages was sent.",
                requested_by="self-service sign-in",
                source="services/selfservice",
            )
        except (PublishError, outbound.NoSuchCustomer):
            log.warning("a sign-in link could not be queued", exc_info=True)
            return page(
                request, "error.html", 503, message="We could not send a link now; try again."
            )
    return page(request, "link_sent.html")


@router.get("/link/{token}")
async def link_page(request: Request, token: str) -> Response:
    """The page a link opens: a button that signs in (nothing is used up by opening it)."""
    return _with_pre_token(request, "link.html", token=token[:100])


@router.post("/widget")
async def widget_link(request: Request) -> Response:
    """The page a channel's signed-in customer lands on from their own connection (the chat
    widget posts the token it was given: it never travels in a URL): the same button."""
    form = await read_form(request)
    return _with_pre_token(request, "link.html", token=form.get("token", "")[:100])


@router.post("/link")
async def use_link(request: Request) -> Response:
    """Sign in with the link's token: once, before it expires."""
    form = await read_form(request)
    if not _pre_token_ok(request, form.get("pre_token", "")):
        return page(request, "error.html", 403, message="The form expired; open the link again.")
    async with request.app.state.pool.acquire() as conn:
        customer_id = await links.use_link(conn, form.get("token", "")[:100])
        if customer_id is None:
            return page(
                request,
                "error.html",
                400,
                message="This link was used already or has expired. Ask for a new one.",
                sign_in=True,
            )
        session_id = await sessions.open_session(conn, customer_id)
    response = redirect("/me")
    set_cookie(response, request, sessions.COOKIE, session_id, sessions.LIFETIME_HOURS * 3600)
    response.delete_cookie(PRE_COOKIE, path="/me")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: Acting) -> Response:
    """End the session here and in the browser."""
    async with request.app.state.pool.acquire() as conn:
        await sessions.close_session(conn, request.cookies.get(sessions.COOKIE, ""))
    response = redirect("/me/sign-in?notice=signed_out")
    response.delete_cookie(sessions.COOKIE, path="/me")
    return response

"""Mount the console on the hub's HTTP app: routes, static files, error pages, live feed."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from services.console import (
    admin_pages,
    auth_pages,
    customer_actions,
    customer_pages,
    erasure_requests,
    file_retry,
    message_files,
    queue_pages,
)
from services.console.guard import Forbidden, SignInRequired, sign_in_url
from services.console.live import TimelineFeed
from services.console.render import page, redirect

#: Requests a script makes (they get 401, not a redirect to the sign-in page).
_FEEDS = (".json", "/events")


@dataclass
class ConsoleState:
    """What the console keeps on ``app.state.console``."""

    secure_cookies: bool
    feed: TimelineFeed


def install(app: FastAPI) -> None:
    """Add the console's routes, static files and error handlers to ``app``."""
    for module in (
        auth_pages,
        queue_pages,
        customer_pages,
        customer_actions,
        admin_pages,
        erasure_requests,
        message_files,
        file_retry,
    ):
        app.include_router(module.router, include_in_schema=False)  # pages, not the API
    app.mount(
        "/console/static",
        StaticFiles(packages=[("services.console", "static")]),
        name="console-static",
    )

    async def sign_in_required(request: Request, exc: Exception) -> Response:
        if request.url.path.endswith(_FEEDS):
            return JSONResponse({"detail": "sign in first"}, status_code=401)
        return redirect(sign_in_url(request) if request.method == "GET" else "/console/sign-in")

    async def forbidden(request: Request, exc: Exception) -> Response:
        return page(request, "error.html", status_code=403, message=f"Not allowed: {exc}")

    app.add_exception_handler(SignInRequired, sign_in_required)
    app.add_exception_handler(Forbidden, forbidden)


def unavailable(request: Request, detail: str) -> Response:
    """The console's answer while its database is unavailable (503; Retry-After is added):
    a page for a browser, JSON for a script."""
    if request.url.path.endswith(_FEEDS):
        return JSONResponse({"detail": detail}, status_code=503)
    message = (
        "The console is unavailable for a moment: its database cannot be reached."
        " Please try again in a minute."
    )
    return page(request, "error.html", status_code=503, message=message)


def state(public_url: str | None, database_url: str) -> ConsoleState:
    """The console's state for an app whose database is ``database_url``."""
    secure = bool(public_url and public_url.lower().startswith("https://"))
    return ConsoleState(secure_cookies=secure, feed=TimelineFeed(database_url))

"""Mount the self-service pages on the hub's HTTP app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from services.selfservice import account_pages, replies, signin_pages
from services.selfservice.guard import NotSignedIn
from services.selfservice.render import page, redirect


def install(app: FastAPI) -> None:
    """Add the /me routes, their stylesheet and the sign-in redirect."""
    for module in (signin_pages, account_pages, replies):
        app.include_router(module.router, include_in_schema=False)  # pages, not the API
    app.mount(
        "/me/static", StaticFiles(packages=[("services.selfservice", "static")]), name="me-static"
    )

    async def not_signed_in(request: Request, exc: Exception) -> Response:
        return redirect("/me/sign-in")

    app.add_exception_handler(NotSignedIn, not_signed_in)


def links_base(public_url: str | None, http_port: int) -> str:
    """Where sign-in links point: the hub's public URL; without one (development), this
    machine's port. Never the request's Host header, which the asker chooses."""
    return public_url or f"http://127.0.0.1:{http_port}"


def unavailable(request: Request, detail: str) -> Response:
    """The pages' answer while the database is unavailable (503; Retry-After is added)."""
    return page(
        request,
        "error.html",
        503,
        message="This page is unavailable for a moment. Please try again in a minute.",
    )

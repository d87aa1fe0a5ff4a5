"""The self-service pages' rendering: Jinja2 with autoescaping and the console's strict
security headers (no inline script or style, nothing from elsewhere)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader

from services.console.render import SECURITY_HEADERS

ENV = Environment(
    loader=PackageLoader("services.selfservice", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Messages a redirect may ask a page to show (by code, so a URL cannot inject text).
NOTICES = {
    "details": "Your details were saved.",
    "unchanged": "Nothing changed.",
    "consent": "Your choices were saved; they apply at once.",
    "erasure": "Your request was received. We confirm it by the channel you prefer.",
    "signed_out": "You are signed out.",
    "replied": "Your message was sent; it appears here in a moment.",
}


def page(
    request: Request,
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` with the session's CSRF token and the notice ``?notice=`` asks for."""
    session = getattr(request.state, "me", None)
    html = ENV.get_template(template).render(
        signed_in=session is not None,
        csrf=session.csrf_token if session else "",
        notice=NOTICES.get(request.query_params.get("notice", "")),
        **context,
    )
    return HTMLResponse(
        html, status_code=status_code, headers={**SECURITY_HEADERS, **(headers or {})}
    )


def redirect(url: str) -> RedirectResponse:
    """See other (after a POST)."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

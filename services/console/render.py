"""Server-side rendering: Jinja2 with autoescaping, and the console's security headers."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader

from schemas import Department

#: No inline script or style, nothing from elsewhere: injected markup could not run anyway.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
        " connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}

ENV = Environment(
    loader=PackageLoader("services.console", "templates"),
    autoescape=True,  # every {{ value }} is HTML-escaped: untrusted text stays text
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Messages a redirect may ask a page to show (by code, so a URL cannot inject text).
NOTICES = {
    "claimed": "You claimed the interaction.",
    "assigned": "The interaction was assigned.",
    "done": "Marked done.",
    "queued": "Reply queued; its delivery status appears on the timeline.",
    "logged": "Interaction logged; it appears on the timeline in a moment.",
    "fetched": "The file was fetched and stored.",
    "merged": "Customers merged.",
    "split": "Identities split off.",
    "deleted": "The customer was deleted.",
    "signed_out": "You are signed out.",
}


def page(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """Render ``template`` with the session (if any) and the notice asked for by ``?notice=``."""
    session = getattr(request.state, "session", None)
    notice = NOTICES.get(request.query_params.get("notice", ""))
    user = session.user if session else None
    html = ENV.get_template(template).render(
        session=session,
        user=user,
        nav_departments=[d.value for d in Department if user and user.can_see(d)],
        csrf=session.csrf_token if session else "",
        notice=notice,
        path=request.url.path,
        **context,
    )
    return HTMLResponse(html, status_code=status_code, headers=SECURITY_HEADERS)


def redirect(url: str) -> RedirectResponse:
    """See other (Post/Redirect/Get)."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)

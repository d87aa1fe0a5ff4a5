"""PostgreSQL unavailable in the web process: 503 with Retry-After, logged once per outage.

Every route, dependency and the channels' token check may meet a database that is down;
rather than handling it in each, the app's exception handler (``install``) and
:class:`~services.api.channel_routes.ChannelRoutes` both ask :func:`refused` whether an
exception means PostgreSQL is unavailable. If so the request is counted against the pool's
:class:`~services.db.outage.Outage` (which logs the outage once, reminds while it lasts, and
says when it is over) and answered 503: JSON ``{"detail": ...}``, or the page a prefix's
renderer makes (the console's). Other exceptions go on as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from services.api.errors import DATABASE_DETAIL, RETRY_AFTER
from services.db.outage import CANDIDATES, Outage, is_unavailable

#: Renders the 503 page of requests under a path prefix: (request, detail) -> response.
Renderer = Callable[[Request, str], Response]


def refused(app: Any, exc: BaseException) -> bool:
    """Whether ``exc`` means PostgreSQL is unavailable; if so the request is counted as
    refused (and the outage logged when it is the first)."""
    if not is_unavailable(exc):
        return False
    outage: Outage | None = getattr(getattr(app.state, "pool", None), "outage", None)
    if outage is not None:
        outage.refuse(exc)
    return True


def install(app: FastAPI, pages: Mapping[str, Renderer] | None = None) -> None:
    """Answer 503 with Retry-After when a request meets PostgreSQL unavailable: the response
    of the first renderer of ``pages`` whose prefix the path has, else JSON."""
    renderers = dict(pages or {})

    async def unavailable(request: Request, exc: Exception) -> Response:
        if not refused(request.app, exc):
            raise exc
        path = request.url.path
        render = next((r for prefix, r in renderers.items() if path.startswith(prefix)), None)
        if render is not None:
            response = render(request, DATABASE_DETAIL)
        else:
            response = JSONResponse({"detail": DATABASE_DETAIL}, status_code=503)
        response.headers["Retry-After"] = RETRY_AFTER
        return response

    for cls in CANDIDATES:
        app.add_exception_handler(cls, unavailable)

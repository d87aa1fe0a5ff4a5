"""POST /v1/interactions: the API channel's inbound door.

The route is served by ``InteractionsFastPath``, an ASGI layer in front of FastAPI: profiled
under load, FastAPI's routing, dependency solving and response model took ~40 % of the web
process's CPU for this request (~200 of ~510 us), as they did for webhooks (see
``services.api.webhooks``). Both ways run the same ``authorize`` and ``accept``, so they answer
alike; the FastAPI route stays declared for the OpenAPI schema and for apps without the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import Headers

from channels.base import (
    ChannelAdapter,
    ParseError,
    PayloadTooLarge,
    Publisher,
    PublishError,
    UnsupportedMediaType,
)
from channels.base.adapter import InboundRequest
from channels.base.http import inbound_request, request_of
from services.api.auth import Principal, Role, authorize, require
from services.api.errors import bus_unavailable
from services.api.limits import BodyLimit, Scope
from services.api.webhooks import Receive, Send, read_body

PATH = "/v1/interactions"
ROLES = (Role.INTEGRATION, Role.AGENT)

router = APIRouter()


class Accepted(BaseModel):
    """The broker acknowledged the interaction."""

    event_id: str
    status: str = "accepted"


async def accept(
    adapter: ChannelAdapter, publisher: Publisher, inbound: InboundRequest
) -> Accepted:
    """Validate and publish one request's interactions; HTTPException 413, 415 or 422 for what
    cannot be accepted, 503 when the broker did not acknowledge."""
    try:
        adapter.verify(inbound)
        interactions = adapter.parse(inbound)
    except PayloadTooLarge as exc:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, str(exc)) from None
    except UnsupportedMediaType as exc:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc)) from None
    except ParseError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, exc.details or str(exc)
        ) from None
    try:
        await publisher.publish(interactions)
    except PublishError:
        raise bus_unavailable() from None
    return Accepted(event_id=str(interactions[0].event_id))


@router.post(PATH, status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def post_interaction(
    request: Request,
    principal: Annotated[Principal, Depends(require(*ROLES))],
) -> Accepted:
    """Validate and publish one interaction; 202 only after the broker's acknowledgement."""
    state = request.app.state
    return await accept(state.api_adapter, state.publisher, await inbound_request(request))


@dataclass(frozen=True)
class FastRoute:
    """What ``scope["route"]`` holds for a request served here (RequestMetrics reads it)."""

    path: str


class InteractionsFastPath:
    """ASGI layer serving ``POST /v1/interactions`` without the framework's routing; any other
    request goes on to the app. Same body limit (413) as the app behind it."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.route = FastRoute(PATH)
        self.allowed = set(ROLES)
        self._limited = BodyLimit(self._serve, max_bytes)

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        """Serve the API channel's POST, or hand the request to the app."""
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == PATH:
            scope["route"] = self.route
            await self._limited(scope, receive_, send)
            return
        await self.app(scope, receive_, send)

    async def _serve(self, scope: Scope, receive_: Receive, send: Send) -> None:
        state = scope["app"].state
        try:  # who is calling first, as the route's dependency does, then the body
            header = Headers(scope=scope).get("authorization", "")
            await authorize(state.tokens, header, self.allowed)
            inbound = request_of(scope, await read_body(receive_))
            accepted = await accept(state.api_adapter, state.publisher, inbound)
            answer = JSONResponse(accepted.model_dump(), status.HTTP_202_ACCEPTED)
        except HTTPException as exc:  # as FastAPI's own handler answers it
            answer = JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
        await answer(scope, receive_, send)

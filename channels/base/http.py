"""The web framework's side of a webhook: snapshot the request, send the WebhookReply back."""

from __future__ import annotations

from fastapi import Request, Response

from channels.base.adapter import InboundRequest
from channels.base.webhook import WebhookReply


async def inbound_request(request: Request) -> InboundRequest:
    """Snapshot a Starlette/FastAPI request (the body read once, as bytes) for an adapter."""
    return InboundRequest(
        method=request.method,
        url=str(request.url),
        headers=dict(request.headers),
        body=await request.body(),
        query=dict(request.query_params),
    )


def http_response(reply: WebhookReply) -> Response:
    """The FastAPI response carrying ``reply``."""
    return Response(content=reply.body, status_code=reply.status, media_type=reply.content_type)

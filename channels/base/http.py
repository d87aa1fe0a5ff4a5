"""The web framework's side of a webhook: snapshot the request, send the WebhookReply back."""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request, Response
from starlette.datastructures import URL

from channels.base.adapter import InboundRequest
from channels.base.webhook import WebhookReply


def request_of(scope: MutableMapping[str, Any], body: bytes) -> InboundRequest:
    """Snapshot an ASGI HTTP request (its scope and whole body) for an adapter: the URL as the
    client asked for it, headers by lower-case name (the last of a repeated one), query
    parameters (the last of a repeated one)."""
    query = scope.get("query_string", b"").decode("latin-1")
    return InboundRequest(
        method=scope["method"],
        url=str(URL(scope=scope)),
        headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
        body=body,
        query=dict(parse_qsl(query, keep_blank_values=True)),
    )


async def inbound_request(request: Request) -> InboundRequest:
    """Snapshot a Starlette/FastAPI request (the body read once, as bytes) for an adapter."""
    return request_of(request.scope, await request.body())


def http_response(reply: WebhookReply) -> Response:
    """The FastAPI response carrying ``reply``."""
    return Response(content=reply.body, status_code=reply.status, media_type=reply.content_type)

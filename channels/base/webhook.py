"""The webhook shape: HTTP requests a provider (or an integration) sends, answered at once.

A small complete example, a channel whose provider POSTs JSON signed with a shared secret and
checks the subscription with a GET first::

    class EchoAdapter(WebhookAdapter):
        name = "echo"
        channels = frozenset({Channel.API})
        routes = (
            Route("hook", methods=("GET",), publishes=False, summary="subscription check"),
            Route("hook", summary="a message", max_body_bytes=64 * 1024),
        )

        def verify(self, request: InboundRequest, route: Route) -> None:
            if not signing.verify(SECRET, request.body, request.header("x-sig")):
                raise SignatureError("bad x-sig")

        def respond(self, request: InboundRequest, route: Route) -> WebhookReply:
            return WebhookReply(200, request.query.get("challenge", "").encode())

        def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
            body = json.loads(request.body)
            return [Interaction.create(channel=Channel.API, ...)]

        async def send(self, command: OutboundCommand) -> SendResult: ...
        async def health(self) -> Health: return Health(ok=True)

The framework mounts each route at ``/channels/<name>/<path>`` (a path starting with ``/`` is
mounted as it is), refuses bodies over the route's limit with 413 before reading them, and
runs ``receive``: verify, parse, publish, and only once the broker acknowledged, acknowledge.
"""

from __future__ import annotations

import json
import logging
from abc import abstractmethod
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar

from pydantic import BaseModel

from channels.base.adapter import ChannelAdapter, ChannelEvent, InboundRequest
from channels.base.errors import (
    ChannelError,
    ParseError,
    PayloadTooLarge,
    SignatureError,
    UnsupportedMediaType,
)
from channels.base.publisher import Publisher, PublishError


class NotAllowed(ChannelError):
    """The authenticated caller may not do what its request asks, e.g. post as a channel it
    was not granted (HTTP 403 with the message, on a CLIENT route)."""


log = logging.getLogger(__name__)

#: A body limit for routes that set none: webhooks are small, email with attachments is not.
DEFAULT_MAX_BODY = 1_048_576
#: Seconds a client is asked to wait before retrying when the broker did not acknowledge.
RETRY_AFTER = "5"


class Audience(StrEnum):
    """Who calls a route, which decides how its failures are answered (``Route.audience``:
    a route that needs token scopes is a client's, any other a provider's)."""

    #: A provider proving itself by signature: what it sends and we cannot read goes to the
    #: dead-letter topic and the provider gets a 2xx (retrying would never succeed).
    PROVIDER = "provider"
    #: An integration holding a bearer token: what cannot be read is refused with 422 and the
    #: reasons as JSON, so its author can fix the request.
    CLIENT = "client"


@dataclass(frozen=True)
class Route:
    """One HTTP route of a webhook adapter."""

    #: Under ``/channels/<name>/``, or mounted as it is when it starts with ``/``.
    path: str
    methods: tuple[str, ...] = ("POST",)
    summary: str = ""
    #: Bodies larger than this are refused with 413 before they are read (None: the adapter's).
    max_body_bytes: int | None = None
    #: False for a route answered by ``respond`` alone (a subscription handshake, a challenge).
    publishes: bool = True
    #: Token scopes the route needs, every one of them, which makes it a client's route: the
    #: framework checks the bearer token (401, 403 naming the missing scope) before the body
    #: is read, then passes who called as ``InboundRequest.caller``. None: a provider's route.
    scopes: tuple[str, ...] = ()
    #: The success status, and request/response models, for the OpenAPI document.
    status: int = 200
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    #: The media type of the success answer, for the OpenAPI document (None: JSON with a
    #: ``response_model``, else ``WebhookReply``'s plain text).
    media_type: str | None = None

    @property
    def audience(self) -> Audience:
        """Who calls the route: a token holder when it needs scopes, else a provider."""
        return Audience.CLIENT if self.scopes else Audience.PROVIDER

    def full_path(self, channel: str) -> str:
        """The path the route is served at."""
        return self.path if self.path.startswith("/") else f"/channels/{channel}/{self.path}"


#: The media type of a reply that names none: a provider's refusal, an empty acknowledgement.
PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class WebhookReply:
    """What the caller gets back."""

    status: int = 200
    body: bytes = b""
    content_type: str = PLAIN_TEXT
    headers: tuple[tuple[str, str], ...] = ()


class FieldProblem(BaseModel):
    """One field of a client's request the adapter could not read (``ParseError.details``)."""

    field: str
    message: str
    type: str


class Refusal(BaseModel):
    """How a client route refuses a request (``error_reply``, JSON): the reason in words, or
    for a body that cannot be read (422) the adapter's problems, one per field."""

    detail: str | list[FieldProblem]


class WebhookAdapter(ChannelAdapter):
    """A channel whose inbound side is HTTP routes: verify, parse (pure), acknowledge."""

    #: The routes the framework serves for this adapter.
    routes: ClassVar[tuple[Route, ...]]
    #: The body limit of routes that name none.
    max_body_bytes: int = DEFAULT_MAX_BODY

    @abstractmethod
    def verify(self, request: InboundRequest, route: Route) -> None:
        """Raise SignatureError unless the request provably comes from the provider (also
        PayloadTooLarge or UnsupportedMediaType for a body the adapter will not read)."""

    @abstractmethod
    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Turn a verified request into events; pure, no I/O; ParseError if it can't."""

    async def ingest(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """``parse``, plus what must be stored before the events are published (the files a
        message carries, in the hub's blob store); ParseError like ``parse``."""
        return self.parse(request, route)

    def acknowledge(
        self, request: InboundRequest, route: Route, events: list[ChannelEvent]
    ) -> WebhookReply:
        """The answer once the events are published (default: an empty 200)."""
        return WebhookReply(200, b"")

    def respond(self, request: InboundRequest, route: Route) -> WebhookReply:
        """The answer of a route that publishes nothing, once verified (default: 404)."""
        return WebhookReply(404, b"not found")

    def body_limit(self, route: Route) -> int:
        """The largest body ``route`` takes."""
        return route.max_body_bytes or self.max_body_bytes


def error_reply(route: Route, status: int, detail: object) -> WebhookReply:
    """A refusal as the route's audience reads it: JSON ``{"detail": ...}`` for clients."""
    headers = (("retry-after", RETRY_AFTER),) if status == 503 else ()
    if route.audience is Audience.CLIENT:
        body = json.dumps({"detail": detail}, ensure_ascii=False).encode()
        return WebhookReply(status, body, "application/json", headers)
    return WebhookReply(status, str(detail).encode(), headers=headers)


async def receive(
    adapter: WebhookAdapter, publisher: Publisher, request: InboundRequest, route: Route
) -> WebhookReply:
    """Handle one call; the caller sees a 2xx only after the broker acknowledged.

    - a bad or missing signature: 403, nothing published; so is a caller's request it may not
      make (``NotAllowed`` from verify or parse: 403 with the reason);
    - a body the adapter will not read (too large, wrong media type): 413 or 415;
    - authentic but unparseable: a provider's request goes to the dead-letter topic with the
      reason and gets a 2xx (it could never succeed); a client's gets 422 with the reasons;
    - the broker does not acknowledge: 503 with Retry-After, so the caller retries later.
    """
    try:
        adapter.verify(request, route)
    except SignatureError as exc:
        log.warning("%s: refused webhook: %s", adapter.name, exc)
        return error_reply(route, 403, "invalid signature")
    except NotAllowed as exc:
        return error_reply(route, 403, str(exc))
    except PayloadTooLarge as exc:
        return error_reply(route, 413, str(exc))
    except UnsupportedMediaType as exc:
        return error_reply(route, 415, str(exc))
    if not route.publishes:
        return adapter.respond(request, route)
    try:
        try:
            events = await adapter.ingest(request, route)
        except NotAllowed as exc:
            return error_reply(route, 403, str(exc))
        except ParseError as exc:
            if route.audience is Audience.CLIENT:
                return error_reply(route, 422, exc.details or str(exc))
            await publisher.dead_letter(request, str(exc), stage=f"channels/{adapter.name}")
            return adapter.acknowledge(request, route, [])
        if events:
            await publisher.publish(events)
    except PublishError:
        detail = "the event bus did not acknowledge; retry later"
        return error_reply(route, 503, detail)
    return adapter.acknowledge(request, route, events)

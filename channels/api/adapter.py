"""The API channel adapter."""

from __future__ import annotations

from typing import ClassVar

import httpx

from channels.api.config import ApiChannelSettings
from channels.api.models import Accepted, InteractionRequest
from channels.api.parse import parse_body
from channels.api.send import post_reply
from channels.api.verify import check_request
from channels.base import (
    ChannelEvent,
    Health,
    InboundRequest,
    Route,
    SendResult,
    WebhookAdapter,
    WebhookReply,
)
from channels.base.webhook import NotAllowed
from schemas import Channel, Interaction, OutboundCommand
from schemas.events import utcnow

#: The API channel's door is part of the hub's public API, so it is not under /channels/api/.
INTERACTIONS = Route(
    "/v1/interactions",
    summary="Validate and publish one interaction; 202 only after the broker's acknowledgement",
    scopes=("interactions:write",),
    status=202,
    request_model=InteractionRequest,
    response_model=Accepted,
)


class ApiAdapter(WebhookAdapter):
    """Interactions posted as JSON by other systems; replies POSTed back, signed."""

    name: ClassVar[str] = "api"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.API})
    routes: ClassVar[tuple[Route, ...]] = (INTERACTIONS,)

    def __init__(self, settings: ApiChannelSettings | None = None) -> None:
        self.settings = settings or ApiChannelSettings()
        self.max_body_bytes = self.settings.max_body_bytes
        self._client: httpx.AsyncClient | None = None

    def verify(self, request: InboundRequest, route: Route) -> None:
        """Check size and content type; callers are authenticated by bearer token upstream."""
        check_request(request, self.settings.max_body_bytes)

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        """Parse the JSON body into one interaction, its event id scoped to the caller;
        NotAllowed when there is no authenticated caller or it was not granted the channel."""
        if request.caller is None:
            raise NotAllowed("no authenticated caller")
        return [
            parse_body(
                request.body,
                utcnow(),
                source=f"channels/{self.name}",
                default_region=self.settings.default_phone_region,
                caller=request.caller,
            )
        ]

    def acknowledge(
        self, request: InboundRequest, route: Route, events: list[ChannelEvent]
    ) -> WebhookReply:
        """202 with the event id the interaction got (parse makes exactly one)."""
        (interaction,) = events
        assert isinstance(interaction, Interaction)
        body = Accepted(event_id=str(interaction.event_id)).model_dump_json().encode()
        return WebhookReply(202, body, "application/json")

    async def send(self, command: OutboundCommand) -> SendResult:
        """POST the reply to the configured callback URL."""
        if self._client is None:
            self._client = httpx.AsyncClient()
        return await post_reply(self._client, self.settings, command)

    async def health(self) -> Health:
        """Healthy when a callback URL and secret are configured."""
        if self.settings.callback_url and self.settings.callback_secret:
            return Health(ok=True, detail=f"replies go to {self.settings.callback_url}")
        return Health(
            ok=False, detail="OMNIHUB_API_CALLBACK_URL/SECRET not set: replies cannot be sent"
        )

    async def close(self) -> None:
        """Release the HTTP client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

"""A channel that lives outside the repository: a folder and an entry point, nothing else.

tests/test_new_channel.py installs it on a temporary path and checks the hub serves it: its
webhook (a GET handshake and a signed POST), its client sessions (a WebSocket that replies
reach through the bus) and its poller (started, restarted after a failure, stopped).
"""

from __future__ import annotations

import json
import os
from typing import ClassVar

from channels.base import (
    ChannelEvent,
    ChannelInfo,
    ClientConnection,
    Health,
    InboundRequest,
    Manifest,
    PollingSource,
    Route,
    SessionAdapter,
    SessionRoute,
    SignatureError,
    WebhookAdapter,
    WebhookReply,
)
from channels.base.signing import SIGNATURE_HEADER, verify
from schemas import Channel, Direction, Identity, IdentityType, Interaction, Kind, OutboundCommand

SECRET = "demo-secret"
#: The channel this demo serves: the test picks one no installed adapter serves.
CHANNEL = Channel(os.environ.get("OMNIHUB_DEMO_CHANNEL", "webchat"))


def message(visitor: str, text: str, provider_id: str) -> Interaction:
    """An inbound message from a visitor."""
    return Interaction.create(
        channel=CHANNEL,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        identities=[Identity(type=IdentityType.USER_ID, scope="demo", value=visitor)],
        text=text,
        provider_message_id=provider_id,
        source="channels/demo",
    )


class DemoAdapter(WebhookAdapter, SessionAdapter, PollingSource):
    """Every shape at once: webhook, sessions, poller."""

    name: ClassVar[str] = "demo"
    channels: ClassVar[frozenset[Channel]] = frozenset({CHANNEL})
    routes: ClassVar[tuple[Route, ...]] = (
        Route("hook", methods=("GET",), publishes=False, summary="subscription handshake"),
        Route("hook", summary="a visitor's message", max_body_bytes=4096),
    )
    sessions: ClassVar[tuple[SessionRoute, ...]] = (SessionRoute("ws"),)
    interval = 0.05
    #: What the poller finds next; "boom" makes a poll fail.
    inbox: ClassVar[list[str]] = []

    def verify(self, request: InboundRequest, route: Route) -> None:
        if request.method == "GET":
            if request.query.get("token") != SECRET:
                raise SignatureError("wrong verify token")
            return
        if not verify(SECRET, request.body, request.header(SIGNATURE_HEADER)):
            raise SignatureError("bad signature")

    def respond(self, request: InboundRequest, route: Route) -> WebhookReply:
        return WebhookReply(200, request.query.get("challenge", "").encode())

    def parse(self, request: InboundRequest, route: Route) -> list[ChannelEvent]:
        body = json.loads(request.body)
        return [message(body["visitor"], body["text"], body["id"])]

    def acknowledge(
        self, request: InboundRequest, route: Route, events: list[ChannelEvent]
    ) -> WebhookReply:
        return WebhookReply(200, b"thanks")

    async def serve(self, connection: ClientConnection, route: SessionRoute) -> None:
        visitor = connection.query["visitor"]
        with self.held.holding(visitor, connection):
            await connection.send_text("held")
            while True:
                text = await connection.receive_text()
                await self.publisher.publish([message(visitor, text, f"ws-{visitor}-{text}")])
                await connection.send_text("ack")

    async def deliver(self, command: OutboundCommand) -> bool:
        return await self.held.send(command.to.value, f"reply:{command.text}")

    async def poll(self) -> None:
        while self.inbox:
            item = self.inbox.pop(0)
            if item == "boom":
                raise RuntimeError("the provider answered nonsense")
            await self.publisher.publish([message("poller", item, f"poll-{item}")])

    async def health(self) -> Health:
        return Health(ok=True)


MANIFEST = Manifest(
    name="demo",
    title="A demonstration channel",
    adapter=DemoAdapter,
    channels=(ChannelInfo(CHANNEL, label="Demo", icon="*", recipients=(IdentityType.USER_ID,)),),
)

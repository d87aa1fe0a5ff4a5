"""A customer's reply written on their pages joins the conversation it answers: an inbound
message on that conversation's channel, thread and address, so it reaches the agents' queue
like any message and their answer goes out where the conversation is."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response

from channels.base import PublishError
from schemas import Channel, Direction, Identity, Interaction, Kind, ThreadRef
from schemas.events import MAX_SUBJECT, MAX_TEXT
from services.console.forms import read_form
from services.selfservice import history
from services.selfservice.changes import SOURCE
from services.selfservice.guard import Acting
from services.selfservice.render import page, redirect

router = APIRouter(prefix="/me")
_REPLY_PREFIX = re.compile(r"^\s*re\s*:", re.IGNORECASE)


def reply_to(answered: dict[str, Any], customer_id: uuid.UUID, text: str) -> Interaction:
    """The customer's message answering ``answered`` (an interaction of their history)."""
    first = answered["identities"][0]
    thread = answered.get("thread")
    subject = answered.get("subject")
    if subject and not _REPLY_PREFIX.match(subject):
        subject = f"Re: {subject}"[:MAX_SUBJECT]
    return Interaction.create(
        channel=Channel(answered["channel"]),
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        identities=[Identity(type=first["type"], scope=first["scope"], value=first["value"])],
        thread=(
            ThreadRef(id=thread["id"], reply_to=answered["provider_message_id"]) if thread else None
        ),
        subject=subject,
        text=text,
        customer_id=customer_id,
        provider_message_id=f"self-service:{uuid.uuid4()}",
        source=SOURCE,
        attributes={"written_in": "self-service", "in_reply_to": str(answered["event_id"])},
    )


@router.post("/reply")
async def reply(request: Request, session: Acting) -> Response:
    """Answer one of the conversations of the customer's history (404 for any other id)."""
    form = await read_form(request)
    try:
        event_id = uuid.UUID(form.get("event_id", ""))
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message") from None
    async with request.app.state.pool.acquire() as conn:
        answered = await history.visible_interaction(conn, session.customer_id, event_id)
    if answered is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such message")
    text = form.get("text", "").strip()
    if form.unstorable() or not text or len(text) > MAX_TEXT:
        return page(request, "error.html", 422, message="Write a message (no NUL characters).")
    if answered["channel"] in history.NOT_ANSWERABLE:
        return page(request, "error.html", 422, message="This entry cannot be answered.")
    try:
        await request.app.state.publisher.publish([reply_to(answered, session.customer_id, text)])
    except PublishError:
        return page(request, "error.html", 503, message="Not sent; please try again.")
    return redirect("/me?notice=replied")

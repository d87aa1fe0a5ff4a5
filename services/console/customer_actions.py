"""What agents do on the customer page: reply, log by hand, merge, split; export and delete."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from channels import registry
from channels.base import PublishError
from schemas import Channel, CustomerEvent, Department, Identity, Purpose
from schemas.events import MAX_SUBJECT, MAX_TEXT
from services import typing
from services.console import handlog, queue, reply, timeline, window
from services.console.customer_pages import customer_page, sendable_channels
from services.console.forms import read_form
from services.console.guard import Actor, Viewer, at_least
from services.console.render import SECURITY_HEADERS, redirect
from services.console.users import ConsoleRole
from services.customers import consent, outbound, store, templates
from services.identity import manual
from services.keys.seal import customer_event_records
from services.privacy import service
from services.privacy.erase import NotFound

router = APIRouter(prefix="/console/customers/{customer_id}")
BUS_DOWN = "The event bus did not acknowledge; nothing was sent. Try again."
#: An agent's typing is announced at most this often per agent and customer (the page posts
#: every 3 s while the agent types; more is dropped).
TYPING_EVERY = 2.0
_typing_gate = typing.Gate(TYPING_EVERY)


@router.post("/reply")
async def send_reply(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """Queue a reply on an allowed channel, through the same path as the API's replies."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await customer_page(request, session, customer_id, refused, 422)
    text, subject = form.text("text"), form.text("subject") or None
    template = form.text("template")
    too_long = len(text) > MAX_TEXT or (subject and len(subject) > MAX_SUBJECT)
    if too_long or not (text or template):
        return await customer_page(request, session, customer_id, "Write a reply first.", 422)
    async with request.app.state.pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
        if found is None:
            return await customer_page(request, session, customer_id)
        customer_id = uuid.UUID(found["id"])
        conversations = await timeline.load(conn, customer_id)
        book = await consent.load(conn, [customer_id])
        windows = await window.states(conn, customer_id, datetime.now(UTC), list(Channel))
    replying_to = timeline.find_item(conversations, form.text("in_reply_to"))
    choices = reply.options(
        customer_id,
        found["identities"],
        book,
        sendable_channels(request),
        timeline.channels_used(conversations),
        (found["profile"] or {}).get("preferred_channel"),
        replying_to,
        windows,
    )
    chosen = next((o for o in choices if o.channel.value == form.text("channel")), None)
    if chosen is None or not chosen.enabled:
        why = chosen.disabled_because if chosen else "not offered"
        return await customer_page(
            request, session, customer_id, f"You cannot reply on that channel ({why}).", 422
        )
    info = registry.channel_info(chosen.channel)
    if form.files and not (info and info.sends_files):
        label = info.label if info else chosen.channel.value
        return await customer_page(
            request, session, customer_id, f"{label} messages cannot carry files.", 422
        )
    attributes: dict[str, str] = {}
    state = windows.get(chosen.channel)
    if template:  # what the channel's templates need, where it has any
        if state is None or not state.templates:
            why = "That channel has no templates: write a message."
            return await customer_page(request, session, customer_id, why, 422)
        try:
            attributes = templates.template_attributes(
                template, form.text("template_language"), form.text("template_parameters")
            )
        except ValueError as exc:
            return await customer_page(request, session, customer_id, f"Template: {exc}.", 422)
        text = text or templates.template_text(attributes)
    elif chosen.template_only and state is not None:
        why = f"{state.text}. Choose a template to send."
        return await customer_page(request, session, customer_id, why, 422)
    try:
        await outbound.queue_message(
            request.app.state.pool,
            request.app.state.producer,
            customer_id,
            channel=chosen.channel,
            text=text,
            subject=subject,
            to=chosen.recipient,
            in_reply_to=uuid.UUID(replying_to["event_id"]) if replying_to else None,
            requested_by=session.user.actor,
            source="services/console",
            files=[(f.name, f.content_type, f.data) for f in form.files],
            blobs=request.app.state.blobs,
            attributes=attributes,
        )
    except PublishError:
        return await customer_page(request, session, customer_id, BUS_DOWN, 503)
    return redirect(f"/console/customers/{customer_id}?notice=queued")


@router.post("/typing")
async def agent_typing(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """The agent is typing a reply on ``channel``: where the channel shows typing and the
    customer consented to service on it, their sessions are told (never stored). 204 whether
    or not anything was announced (a typing hint is dropped rather than refused)."""
    form = await read_form(request)
    try:
        channel = Channel(form.text("channel"))
    except ValueError:
        return Response("unknown channel", status_code=422, headers=SECURITY_HEADERS)
    done = Response(status_code=204, headers=SECURITY_HEADERS)
    info = registry.channel_info(channel)
    if info is None or not info.shows_typing or channel not in sendable_channels(request):
        return done
    if not _typing_gate.passes(str(session.user.id), str(customer_id), channel.value):
        return done
    async with request.app.state.pool.acquire() as conn:
        live_id = await manual.live_id(conn, customer_id)
        if live_id is None:
            return Response("no such customer", status_code=404, headers=SECURITY_HEADERS)
        book = await consent.load(conn, [live_id])
        if book.allows(live_id, channel, Purpose.SERVICE):
            await typing.announce_agent(conn, live_id, channel, session.user.username)
    return done


@router.post("/log")
async def log_interaction(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """Publish a hand-logged visit, letter or call through the API channel's publisher."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await customer_page(request, session, customer_id, refused, 422)
    try:
        kind, department = form.text("kind"), Department(form.text("department"))
        if kind not in handlog.KINDS or form.text("direction") not in ("inbound", "outbound"):
            raise ValueError("unknown kind or direction")
        at = handlog.occurred(form.text("occurred_at"), form.text("tz_offset"))
        summary = form.text("summary")
        if not summary or len(summary) > MAX_TEXT:
            raise ValueError("write a summary")
    except ValueError as exc:
        return await customer_page(request, session, customer_id, f"Cannot log: {exc}", 422)
    async with request.app.state.pool.acquire() as conn:
        found = await store.customer(conn, customer_id)
    if found is None or not found["identities"]:
        return await customer_page(request, session, customer_id, "No identity to log on.", 422)
    first = found["identities"][0]
    identity = Identity(type=first["type"], scope=first["scope"], value=first["value"])
    event = handlog.interaction(
        uuid.UUID(found["id"]),
        identity,
        kind,
        form.text("direction"),
        at,
        summary,
        department,
        session.user,
    )
    async with request.app.state.pool.acquire() as conn:
        await queue.logged_by_hand(conn, event.event_id, session.user)
    try:
        await request.app.state.publisher.publish([event])
    except PublishError:
        return await customer_page(request, session, customer_id, BUS_DOWN, 503)
    return redirect(f"/console/customers/{found['id']}?notice=logged")


async def _publish(request: Request, event: CustomerEvent) -> None:
    pool = request.app.state.pool
    records = await customer_event_records(pool, [event], "services/console")
    await request.app.state.producer.send_all(records)


@router.post("/merge")
async def merge(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """Merge another customer into this one, with a reason (identity API semantics)."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await customer_page(request, session, customer_id, refused, 422)
    reason = form.text("reason")
    try:
        other = uuid.UUID(form.text("other"))
        if len(reason) < 3:
            raise ValueError("give a reason")
        async with request.app.state.pool.acquire() as conn:
            event = await manual.merge(
                conn,
                customer_id,
                other,
                reason,
                session.user.actor,
                request.app.state.identity_rules,
            )
        await _publish(request, event)
    except (ValueError, manual.ManualError) as exc:
        return await customer_page(request, session, customer_id, f"Cannot merge: {exc}", 409)
    except PublishError:
        return await customer_page(request, session, customer_id, BUS_DOWN, 503)
    return redirect(f"/console/customers/{event.customer_id}?notice=merged")


@router.post("/split")
async def split(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """Cut the checked identities out of this customer, with a reason."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await customer_page(request, session, customer_id, refused, 422)
    reason = form.text("reason")
    try:
        identities = [Identity.parse(value) for value in form.many("identity")]
        if not identities or len(reason) < 3:
            raise ValueError("check identities and give a reason")
        async with request.app.state.pool.acquire() as conn:
            event = await manual.split(conn, customer_id, identities, reason, session.user.actor)
        await _publish(request, event)
    except (ValueError, ValidationError, manual.ManualError) as exc:
        return await customer_page(request, session, customer_id, f"Cannot split: {exc}", 409)
    except PublishError:
        return await customer_page(request, session, customer_id, BUS_DOWN, 503)
    return redirect(f"/console/customers/{customer_id}?notice=split")


@router.get("/export")
async def export(request: Request, session: Viewer, customer_id: uuid.UUID) -> Response:
    """Download everything held about the customer (supervisors and admins; logged)."""
    at_least(session, ConsoleRole.SUPERVISOR)
    document = await service.export_customer(
        request.app.state.pool, customer_id, session.user.actor
    )
    if document is None:
        return await customer_page(request, session, customer_id)
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": f'attachment; filename="customer-{customer_id}.json"',
        },
    )


@router.post("/delete")
async def delete(request: Request, session: Actor, customer_id: uuid.UUID) -> Response:
    """Delete the customer (admins only), with a reason; publishes the tombstone."""
    at_least(session, ConsoleRole.ADMIN)
    form = await read_form(request)
    if refused := form.unstorable():
        return await customer_page(request, session, customer_id, refused, 422)
    reason = form.text("reason")
    if len(reason) < 3:
        return await customer_page(request, session, customer_id, "Give a reason.", 422)
    try:
        await service.delete_customer(
            request.app.state.pool,
            request.app.state.producer,
            customer_id,
            reason,
            session.user.actor,
            request.app.state.blobs,
        )
    except (NotFound, manual.ManualError) as exc:
        return await customer_page(request, session, customer_id, f"Cannot delete: {exc}", 409)
    except PublishError:
        return await customer_page(request, session, customer_id, BUS_DOWN, 503)
    return redirect("/console/search?notice=deleted")

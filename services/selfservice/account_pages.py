"""The signed-in customer's pages: their history, their details, consent and data."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import Response
from pydantic import ValidationError

from channels import registry
from channels.base import PublishError
from schemas import Channel, IdentityType, Purpose
from services.console.forms import read_form
from services.console.render import SECURITY_HEADERS
from services.customers import consent, store
from services.customers.files import attachment_of, file_response, read_blob
from services.identity.profile import Address, ProfileUpdate
from services.privacy import service
from services.selfservice import changes, history
from services.selfservice.guard import Acting, Customer
from services.selfservice.render import page, redirect
from services.selfservice.sessions import CustomerSession

router = APIRouter(prefix="/me")
LANGUAGES = {
    "en": "English",
    "fr": "Français",
    "de": "Deutsch",
    "es": "Español",
    "pt": "Português",
    "ru": "Русский",
}
BUS_DOWN = "We could not save this now; nothing changed. Please try again."


async def _customer(request: Request, session: CustomerSession) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn:
        found = await store.customer(conn, session.customer_id)
    if found is None:  # erased while signed in
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return found


@router.get("")
async def my_history(request: Request, session: Customer, after: str | None = None) -> Response:
    """Everything sent and received on every channel, newest first, paged."""
    found = await _customer(request, session)
    try:
        async with request.app.state.pool.acquire() as conn:
            shown = await history.page(conn, session.customer_id, after)
    except ValueError:
        return page(request, "error.html", 400, message="That page does not exist.")
    return page(
        request,
        "history.html",
        name=(found.get("profile") or {}).get("name") or "",
        items=shown.items,
        next_cursor=shown.next_cursor,
        first_page=after is None,
    )


def consent_channels(
    identities: list[dict[str, Any]], statements: list[dict[str, Any]]
) -> list[Channel]:
    """The channels the customer can be reached on (by their identities) or said something
    about: the rows of their consent form."""
    held = {IdentityType(i["type"]) for i in identities}
    stated = {s["channel"] for s in statements}
    rows = []
    for channel in Channel:
        info = registry.channel_info(channel)
        reachable = info is not None and info.recipients is not None and held & set(info.recipients)
        if reachable or channel.value in stated:
            rows.append(channel)
    return rows


async def _account(
    request: Request,
    session: CustomerSession,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    found = await _customer(request, session)
    async with request.app.state.pool.acquire() as conn:
        book = await consent.load(conn, [session.customer_id])
        pending = await conn.fetchval(
            "SELECT requested_at FROM erasure_requests WHERE customer_id = $1"
            " AND status = 'pending'",
            session.customer_id,
        )
    profile = found.get("profile") or {}
    address = (profile.get("addresses") or [{}])[0]
    rows = [
        {
            "channel": channel.value,
            "label": registry.label(channel.value),
            "purposes": {p.value: book.allows(session.customer_id, channel, p) for p in Purpose},
        }
        for channel in consent_channels(found["identities"], found["consents"])
    ]
    return page(
        request,
        "account.html",
        status_code=status_code,
        error=error,
        profile=profile,
        address=address,
        identities=[i for i in found["identities"] if i["type"] in ("email", "phone")],
        languages=LANGUAGES,
        channels=[(c.value, registry.label(c.value)) for c in _preferable(request)],
        consent_rows=rows,
        purposes=[p.value for p in Purpose],
        erasure_pending=pending,
    )


def _preferable(request: Request) -> list[Channel]:
    """Channels some adapter of the hub sends on (what a customer may prefer)."""
    served = {c for a in request.app.state.adapters.values() for c in a.channels}
    return [c for c in Channel if c in served and c is not Channel.API]


@router.get("/account")
async def account(request: Request, session: Customer) -> Response:
    """Contact details, consent per channel and purpose, the data export, erasure."""
    return await _account(request, session)


def _profile_change(form: dict[str, str], allowed: list[Channel]) -> ProfileUpdate:
    """The profile fields the details form sets (ValueError/ValidationError when invalid)."""
    preferred = form.get("preferred_channel", "").strip()
    if preferred and preferred not in {c.value for c in allowed}:
        raise ValueError("choose one of the channels offered")
    language = form.get("language", "").strip()
    if language and language not in LANGUAGES:
        raise ValueError("choose one of the languages offered")
    lines = [line.strip() for line in form.get("address_lines", "").splitlines() if line.strip()]
    address = Address(
        lines=lines,
        postal_code=form.get("postal_code", "").strip() or None,
        city=form.get("city", "").strip() or None,
        country=form.get("country", "").strip().upper() or None,
    )
    has_address = bool(lines or address.postal_code or address.city or address.country)
    return ProfileUpdate(
        name=form.get("name", "").strip() or None,
        language=language or None,
        preferred_channel=Channel(preferred) if preferred else None,
        addresses=[address] if has_address else [],
    )


@router.post("/details")
async def save_details(request: Request, session: Acting) -> Response:
    """Correct name, postal address, preferred channel and language: an event on the timeline."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await _account(request, session, refused, 422)
    try:
        change = _profile_change(form, _preferable(request))
    except (ValueError, ValidationError) as exc:
        why = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
        return await _account(request, session, f"Not saved: {why}.", 422)
    found = await _customer(request, session)
    try:
        changed = await changes.correct_profile(
            request.app.state.pool, request.app.state.publisher, found, change
        )
    except PublishError:
        return await _account(request, session, BUS_DOWN, 503)
    return redirect(f"/me/account?notice={'details' if changed else 'unchanged'}")


@router.post("/consent")
async def save_consent(request: Request, session: Acting) -> Response:
    """Consent per channel and purpose as ticked; only what changed is stated."""
    form = await read_form(request)
    found = await _customer(request, session)
    async with request.app.state.pool.acquire() as conn:
        book = await consent.load(conn, [session.customer_id])
    statements = []
    for channel in consent_channels(found["identities"], found["consents"]):
        for purpose in Purpose:
            granted = form.get(f"{channel.value}:{purpose.value}") == "yes"
            if granted != book.allows(session.customer_id, channel, purpose):
                statements.append(changes.statement(channel.value, purpose, granted))
    if not statements:
        return redirect("/me/account?notice=unchanged")
    try:
        await changes.set_consent(
            request.app.state.pool, request.app.state.publisher, found, statements
        )
    except PublishError:
        return await _account(request, session, BUS_DOWN, 503)
    return redirect("/me/account?notice=consent")


@router.get("/export")
async def export(request: Request, session: Customer) -> Response:
    """Everything held about the customer, as the console's export gives it (logged)."""
    document = await service.export_customer(
        request.app.state.pool, session.customer_id, changes.CHANGED_BY
    )
    if document is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such customer")
    return Response(
        json.dumps(document, ensure_ascii=False, indent=2),
        media_type="application/json",
        headers={
            **SECURITY_HEADERS,
            "Content-Disposition": 'attachment; filename="my-data.json"',
        },
    )


@router.post("/erasure")
async def ask_erasure(request: Request, session: Acting) -> Response:
    """Ask for erasure: an admin confirms it in the console."""
    form = await read_form(request)
    if refused := form.unstorable():
        return await _account(request, session, refused, 422)
    found = await _customer(request, session)
    try:
        await changes.request_erasure(
            request.app.state.pool,
            request.app.state.publisher,
            found,
            form.get("reason", "").strip()[:2000],
        )
    except changes.AlreadyRequested:
        return redirect("/me/account?notice=erasure")
    except PublishError:
        return await _account(request, session, BUS_DOWN, 503)
    return redirect("/me/account?notice=erasure")


@router.get("/files/{event_id}/{index}")
async def my_file(request: Request, session: Customer, event_id: uuid.UUID, index: int) -> Response:
    """A file of one of the customer's own messages (404 for anything else)."""
    async with request.app.state.pool.acquire() as conn:
        found = await history.visible_interaction(conn, session.customer_id, event_id)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such file")
    attachment = attachment_of(found, index)
    return file_response(await read_blob(request, attachment["blob"]), attachment)

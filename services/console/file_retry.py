"""An agent's retry of a message's file the platform did not give when the message arrived.

The channel's adapter (found through the registry: the console names no channel) fetches the
file again from what it recorded in the attachment (``MediaAdapter.refetch``), in the web
process; the file is stored under the id ``unstage`` would have given it
(``blob_id(event, n)``), so a retry or a later redelivery writes the same blob again rather
than a second one, and the timeline row's stored interaction takes it in one UPDATE that also
announces the change to the live feed (the timeline's trigger fires on INSERT only). A
failure changes nothing and the page says why.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from channels import registry
from channels.base import MediaAdapter, MediaRefused, MediaUnavailable, blob_id
from schemas import Channel, Interaction
from services.console.customer_pages import customer_page
from services.console.guard import Actor
from services.console.render import page, redirect
from services.console.timeline import missing_file

log = logging.getLogger(__name__)

router = APIRouter(prefix="/console")

#: The attachment ($2, from 1) takes its blob, size and type ($3) unless it has a blob already
#: (a concurrent retry stored it: nothing to do); the markers ``media_unavailable`` and
#: ``media_error`` go once no other attachment is a missing file (``missing_file``). The
#: statement re-reads a row another retry just changed (READ COMMITTED), so two retries of two
#: files of one message clear the markers once both are stored. The NOTIFY is the trigger's.
_STORE = """
WITH changed AS (
    UPDATE timeline t SET interaction = jsonb_set(
        CASE WHEN NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(t.interaction->'attachments')
                          WITH ORDINALITY AS a(file, n)
            WHERE a.n <> $2 AND coalesce(a.file->>'blob', '') = ''
              AND (coalesce(a.file->>'provider_id', '') <> ''
                   OR a.file->>'url' LIKE 'https://%' OR a.file->>'url' LIKE 'http://%')
        ) THEN jsonb_set(
            t.interaction, '{attributes}',
            coalesce(t.interaction->'attributes', '{}'::jsonb) - 'media_unavailable'
                - 'media_error'
        ) ELSE t.interaction END,
        ARRAY['attachments', ($2 - 1)::text],
        (t.interaction->'attachments'->($2 - 1)) || $3::jsonb
    )
    WHERE t.event_id = $1
      AND jsonb_typeof(t.interaction->'attachments'->($2 - 1)) = 'object'
      AND coalesce(t.interaction->'attachments'->($2 - 1)->>'blob', '') = ''
    RETURNING t.customer_id, t.event_id
)
SELECT customer_id, pg_notify('omnihub_timeline', customer_id::text || '/' || event_id::text)
FROM changed
"""

_KEPT = "SELECT EXISTS (SELECT 1 FROM timeline WHERE event_id = $1)"


def _adapter(request: Request, channel: str) -> MediaAdapter | None:
    """The adapter of this process that serves ``channel`` and fetches its media."""
    try:
        manifest = registry.for_channel(Channel(channel))
    except ValueError:
        return None
    found = request.app.state.adapters.get(manifest.name) if manifest else None
    return found if isinstance(found, MediaAdapter) else None


@router.post("/messages/{event_id}/files/{index}/retry")
async def retry_file(request: Request, session: Actor, event_id: uuid.UUID, index: int) -> Response:
    """Fetch the ``index``-th file (from 1) of a message again; back to the customer page."""
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT customer_id, channel, interaction FROM timeline WHERE event_id = $1", event_id
        )
    if row is None:
        return page(request, "error.html", status_code=404, message="No such message.")
    customer_id: uuid.UUID = row["customer_id"]
    stored: dict[str, Any] = row["interaction"]
    if isinstance(stored, str):
        stored = json.loads(stored)
    attachments = stored.get("attachments") or []
    if not 1 <= index <= len(attachments):
        return page(request, "error.html", status_code=404, message="No such file.")

    async def refused(message: str, status_code: int) -> Response:
        return await customer_page(request, session, customer_id, message, status_code)

    found = attachments[index - 1]
    if found.get("blob"):
        return await refused("That file is stored already: there is nothing to fetch.", 409)
    if not missing_file(found):
        return await refused("That attachment is no file the platform keeps.", 409)
    adapter = _adapter(request, row["channel"])
    if adapter is None:
        label = registry.label(row["channel"])
        return await refused(f"This hub does not fetch {label} files here.", 409)
    try:
        interaction = Interaction.model_validate(stored)
    except ValidationError:
        return await refused("The stored message could not be read.", 409)
    try:
        media = await adapter.refetch(interaction.attachments[index - 1], interaction)
    except (MediaUnavailable, MediaRefused) as exc:
        log.info("console: file %s/%d not fetched again: %s", event_id, index, exc)
        return await refused(f"The file could not be fetched: {exc}", 502)
    blob = blob_id(event_id, index - 1)
    try:
        await request.app.state.blobs.put(blob, media.data)
    except OSError as exc:
        log.warning("console: the blob store did not take %s: %s", blob, exc)
        return await refused("The file was fetched but could not be stored. Try again.", 503)
    update = {"blob": blob, "size": len(media.data), "content_type": media.content_type}
    async with request.app.state.pool.acquire() as conn:
        changed = await conn.fetchrow(_STORE, event_id, index, update)
        kept = changed is not None or await conn.fetchval(_KEPT, event_id)
    if not kept:  # erased meanwhile: what was just stored must not outlive it
        await request.app.state.blobs.delete_event(event_id)
        return page(request, "error.html", status_code=404, message="No such message.")
    if changed is None:
        return await refused("That file is stored already: there is nothing to fetch.", 409)
    return redirect(f"/console/customers/{changed['customer_id']}?notice=fetched")

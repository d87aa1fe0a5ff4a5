"""Pure parsing of an API-channel body into an Interaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from channels.api.models import InteractionRequest
from channels.base import ParseError
from channels.base.adapter import Caller
from channels.base.webhook import NotAllowed
from schemas import Interaction
from schemas.identities import STORABLE
from schemas.ids import client_event_id_for

#: What a field holding NUL is told (the schemas refuse it with a pattern, whose own message
#: would only quote the regular expression).
NUL_MESSAGE = "must not contain NUL (\\u0000): it cannot be stored"
#: How pydantic names the string member of a union (an attribute value) in an error's location.
UNION_STR = "constrained-str"


def _locate(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "body"


def _nul(err: ErrorDetails) -> bool:
    """Whether the error is the schemas' refusal of NUL."""
    pattern = err.get("ctx", {}).get("pattern")
    return err["type"] == "string_pattern_mismatch" and pattern == STORABLE


def _details(exc: ValidationError) -> list[dict[str, object]]:
    """One detail per bad field; a NUL in an attribute value is named once, not once per
    member of the attribute's union (str, int, float, bool)."""
    errors = exc.errors(include_url=False, include_input=False)
    nul = {tuple(e["loc"][:-1]) for e in errors if _nul(e) and e["loc"][-1] == UNION_STR}
    details: list[dict[str, object]] = []
    for err in errors:
        loc, message = err["loc"], err["msg"]
        if _nul(err):
            loc, message = tuple(loc[:-1]) if loc[-1] == UNION_STR else loc, NUL_MESSAGE
        elif tuple(loc[:-1]) in nul:
            continue
        elif loc[-1:] == (UNION_STR,):  # named "str" before it was constrained
            loc = (*loc[:-1], "str")
        details.append({"field": _locate(loc), "message": message, "type": err["type"]})
    return details


def parse_body(
    body: bytes,
    received_at: datetime,
    source: str = "api",
    default_region: str | None = None,
    caller: Caller | None = None,
) -> Interaction:
    """Validate the JSON body and build the interaction; ParseError names each bad field.

    With a ``caller`` the event id is the caller's own (``client_event_id_for``: its token id,
    the channel and ``provider_message_id``), so only the same caller's retry is deduplicated,
    and a ``channel`` the caller was not granted is refused (NotAllowed, naming it). Without
    one the id is ``Interaction.create``'s (channel and provider id)."""
    try:
        request = InteractionRequest.model_validate_json(
            body, context={"default_region": default_region}
        )
        fields = request.model_dump(exclude_none=True)
        fields["identities"] = request.identities
        fields["received_at"] = received_at
        fields["source"] = source
        if caller is not None:
            channel = request.channel.value
            if not caller.may_post_as(channel):
                granted = ", ".join(sorted(caller.channels)) or "none"
                raise NotAllowed(
                    f"this token may not post as channel {channel!r} (granted: {granted})"
                )
            fields["event_id"] = client_event_id_for(
                caller.id, channel, request.provider_message_id
            )
        return Interaction.create(**fields)
    except ValidationError as exc:
        details = _details(exc)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ParseError(f"invalid interaction: {summary}", details=details) from None

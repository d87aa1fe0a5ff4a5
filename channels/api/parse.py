"""Pure parsing of an API-channel body into an Interaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from channels.api.models import InteractionRequest
from channels.base import ParseError
from schemas import Interaction


def _locate(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "body"


def parse_body(
    body: bytes, received_at: datetime, source: str = "api", default_region: str | None = None
) -> Interaction:
    """Validate the JSON body and build the interaction; ParseError names each bad field."""
    try:
        request = InteractionRequest.model_validate_json(
            body, context={"default_region": default_region}
        )
        fields = request.model_dump(exclude_none=True)
        fields["identities"] = request.identities
        fields["received_at"] = received_at
        fields["source"] = source
        return Interaction.create(**fields)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {"field": _locate(err), "message": err["msg"], "type": err["type"]}
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ParseError(f"invalid interaction: {summary}", details=details) from None

"""HTTP errors shared by the API's routes, and the models of their bodies.

The models are the response schemas of the OpenAPI document (``services.api.openapi``), so
that what it promises for a refusal is what the routes answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import HTTPException, status
from pydantic import BaseModel, ConfigDict

RETRY_AFTER = "5"


class Error(BaseModel):
    """A refusal of the hub's own routes: why, in words."""

    detail: str


class RequestProblem(BaseModel):
    """One part of a request FastAPI could not read: where (``loc``: ``body``, ``path``,
    ``query`` and the field) and why (``msg``, ``type``; with ``input`` and ``ctx``)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class Invalid(BaseModel):
    """422: one entry per part of the request that does not validate, or, for a value the
    route itself refused (an identity, a cursor), the reason in words."""

    detail: str | list[RequestProblem]


#: Response headers of the OpenAPI document, by the status that carries them.
RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
AUTHENTICATE_HEADER: dict[str, Any] = {
    "WWW-Authenticate": {
        "description": "the scheme to authenticate with",
        "required": True,
        "schema": {"type": "string", "enum": ["Bearer"]},
    }
}
HEADERS: dict[int, dict[str, Any]] = {401: AUTHENTICATE_HEADER, 503: RETRY_AFTER_HEADER}


def answers(described: Mapping[int, str]) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=``: each status with its description, the ``Error`` body and the
    headers it carries (Retry-After on 503)."""
    return {
        code: {
            "model": Error,
            "description": text,
            **({"headers": HEADERS[code]} if code in HEADERS else {}),
        }
        for code, text in described.items()
    }


def bus_unavailable(
    detail: str = "the event bus did not acknowledge; retry later",
) -> HTTPException:
    """503 with Retry-After: the broker did not acknowledge, so the client should retry."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail, headers={"Retry-After": RETRY_AFTER}
    )


DATABASE_DETAIL = "the database is unavailable; retry later"


def database_unavailable(detail: str = DATABASE_DETAIL) -> HTTPException:
    """503 with Retry-After: PostgreSQL cannot be reached, so the client should retry."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE, detail, headers={"Retry-After": RETRY_AFTER}
    )

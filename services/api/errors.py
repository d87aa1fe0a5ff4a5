"""HTTP errors shared by the API's routes."""

from __future__ import annotations

from fastapi import HTTPException, status

RETRY_AFTER = "5"


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

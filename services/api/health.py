"""Liveness, readiness (broker and database reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from schemas.events import utcnow
from schemas.sealing import period_of

router = APIRouter()


class Readiness(BaseModel):
    """What /readyz answers: ready or not, and each check's result ("ok", or why not)."""

    ready: bool
    checks: dict[str, str]


READINESS: dict[int | str, dict[str, Any]] = {
    200: {
        "model": Readiness,
        "description": "PostgreSQL and the broker answer, the day's period key is known",
    },
    503: {
        "model": Readiness,
        "description": "PostgreSQL or the broker does not answer, or the day's key is not known",
    },
}
METRICS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "the Prometheus text format",
        "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
    }
}


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None, responses=READINESS)
async def readyz(request: Request) -> Response:
    """Ready when PostgreSQL (if used) and the broker answer and the day's period key is known;
    503 otherwise."""
    checks: dict[str, Any] = {}
    if request.app.state.pool is not None:
        try:
            async with asyncio.timeout(2):
                await request.app.state.pool.fetchval("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc!r}"
    try:
        async with asyncio.timeout(2):
            await request.app.state.producer.ping()
        checks["kafka"] = "ok"
    except Exception as exc:
        checks["kafka"] = f"error: {exc!r}"
    for name, adapter in request.app.state.adapters.items():
        health = await adapter.health()
        checks[f"channel:{name}"] = "ok" if health.ok else f"degraded: {health.detail}"
    # nothing raw can be published before the day's public key is known (services.keys.periods)
    period = period_of(utcnow())
    known = period in request.app.state.publisher.keyring.known()
    checks["period_key"] = "ok" if known else f"waiting for the key of {period}"
    ready = (
        checks.get("database", "ok") == "ok"
        and checks["kafka"] == "ok"
        and checks["period_key"] == "ok"
    )
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses=METRICS)
async def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

"""Liveness, readiness (broker and database reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

router = APIRouter()


class Readiness(BaseModel):
    """What /readyz answers: ready or not, and each check's result ("ok", or why not)."""

    ready: bool
    checks: dict[str, str]


READINESS: dict[int | str, dict[str, Any]] = {
    200: {"model": Readiness, "description": "PostgreSQL and the broker answer"},
    503: {"model": Readiness, "description": "PostgreSQL or the broker does not answer"},
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
    """Ready when PostgreSQL (if used) and the broker answer; 503 otherwise."""
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
    ready = checks.get("database", "ok") == "ok" and checks["kafka"] == "ok"
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response, responses=METRICS)
async def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

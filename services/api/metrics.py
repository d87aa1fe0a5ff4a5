"""HTTP request metrics (Prometheus)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

REQUESTS = Counter("omnihub_http_requests_total", "HTTP requests", ["route", "status"])
LATENCY = Histogram("omnihub_http_request_seconds", "HTTP request time", ["route"])


class RequestMetrics:
    """ASGI middleware counting requests by route template and status."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Time the request and record its status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status_code = 500

        async def capture(message: Any) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", "unmatched")
            REQUESTS.labels(name, str(status_code)).inc()
            LATENCY.labels(name).observe(time.perf_counter() - start)

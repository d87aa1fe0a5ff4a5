"""One HTTP client an adapter keeps for its calls to a provider: made on first use (an adapter
built but never used opens nothing), reused so the calls share connections, closed with it."""

from __future__ import annotations

import httpx


class ReusedClient:
    """``client()`` is the adapter's httpx client; redirects are never followed."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._client: httpx.AsyncClient | None = None

    def __call__(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        return self._client

    async def close(self) -> None:
        """Close the client (a later call makes a new one)."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

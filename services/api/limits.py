"""ASGI middleware: refuse request bodies over a size limit with 413, without buffering them."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

Scope = dict[str, Any]


class BodyLimit:
    """Answers 413 when Content-Length or the streamed body exceeds ``max_bytes`` (or, on a
    path one of ``wider`` matches, that pattern's limit: a form that carries files)."""

    def __init__(
        self, app: Any, max_bytes: int, wider: Sequence[tuple[re.Pattern[str], int]] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.wider = tuple(wider)

    def limit(self, path: str) -> int:
        """The largest body taken on ``path``."""
        return next((n for pattern, n in self.wider if pattern.match(path)), self.max_bytes)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Pass small requests through; cut off large ones."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await self._refuse(send, limit)
            return
        seen = 0
        refused = False

        async def limited_receive() -> Any:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._refuse(send, limit)

    async def _refuse(self, send: Any, limit: int) -> None:
        body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass

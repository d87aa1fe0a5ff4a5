"""uvicorn for one web process, stopping as its long-lived connections need: it closes
WebSockets itself (1012), and here the sessions' fallback streams end the same way once it
no longer accepts connections (an open HTTP response would hold its shutdown up)."""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import Any

import uvicorn

from services.api.session_fallback import end_streams

#: uvicorn's exit status when the server did not start.
STARTUP_FAILURE = 3


class Server(uvicorn.Server):
    """uvicorn's server, ending the fallback streams before it waits for requests."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop listening, end the streams (their clients must reconnect elsewhere, not here),
        then uvicorn's own shutdown."""
        for server in self.servers:
            server.close()
        await end_streams()
        await super().shutdown(sockets)


def run(app: Any, **options: Any) -> None:
    """``uvicorn.run(app, **options)`` for one process, with ``Server``."""
    server = Server(uvicorn.Config(app, **options))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)

"""The email section's yardstick: an aiosmtpd server whose handler only counts messages.

Run as its own process (``python -m services.bench.bare_smtp PORT``), on uvloop with the
tuned GC and the same aiosmtpd options as the email channel's server (channels/email/smtp.py),
so the ratio of the two tells what the channel's own work costs beyond aiosmtpd's.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys

from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.email.config import EmailSettings

OK = "250 2.0.0 OK: message accepted"


class CountingHandler:
    """Takes every recipient (aiosmtpd's default) and counts each message, nothing else."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.messages += 1
        return OK


async def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve until SIGTERM or SIGINT."""
    settings = EmailSettings()  # its defaults: the limits the channel's server runs with
    handler = CountingHandler()
    hostname = socket.gethostname()
    loop = asyncio.get_running_loop()

    def protocol() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=settings.max_message_bytes,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            timeout=settings.idle_seconds,
            loop=loop,
        )

    server = await loop.create_server(protocol, host, port)
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    server.close()


def main() -> None:
    """``python -m services.bench.bare_smtp PORT``."""
    import uvloop

    from services.worker.runtime import tune_gc

    tune_gc()
    uvloop.run(serve(int(sys.argv[1])))


if __name__ == "__main__":
    main()

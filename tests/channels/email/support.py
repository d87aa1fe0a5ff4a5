"""What the email tests share: the channel's settings, messages built or taken from the
corpus with fresh Message-IDs, and the published events of a message."""

from __future__ import annotations

import json
import re
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from channels.email.config import EmailSettings
from schemas.cloudevents import header_map
from schemas.ids import event_id_for
from tests.support import unique

CORPUS = Path(__file__).parent / "corpus"
INBOXES = "support@acme.example, billing@acme.example=finance"
KEY = "test-email-signing-key-0123456789abcdef"
#: The signing key the Mailgun sample was signed with (tests/channels/email/samples).
MAILGUN_KEY = "key-test-0123456789abcdef"
_MESSAGE_ID = re.compile(rb"^Message-ID:[^\r\n]*\r?\n", re.IGNORECASE | re.MULTILINE)


def settings(data_dir: Path, **extra: Any) -> EmailSettings:
    """The channel's settings for tests: two inboxes, an ephemeral SMTP port."""
    values: dict[str, Any] = {
        "EMAIL_INBOXES": INBOXES,
        "OMNIHUB_SMTP_PORT": 0,
        "EMAIL_SIGNING_KEY": KEY,
        "OMNIHUB_DATA_DIR": data_dir,
    }
    values.update(extra)
    return EmailSettings(**values)


def message_id(prefix: str = "m") -> str:
    """A Message-ID (without brackets) no other test uses."""
    return f"{unique(prefix)}@mail.example.org"


def mail(
    sender: str,
    to: str = "support@acme.example",
    *,
    subject: str = "Router keeps dropping",
    text: str = "Hello, my router keeps dropping the connection.",
    mid: str | None = None,
    **headers: str,
) -> tuple[bytes, str]:
    """A plain message and its Message-ID."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    mid = mid or message_id()
    msg["Message-ID"] = f"<{mid}>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(text)
    return msg.as_bytes(), mid


def corpus(name: str, mid: str | None = None) -> tuple[bytes, str]:
    """A corpus message with a fresh Message-ID (or ``mid``), and that id."""
    raw = (CORPUS / name).read_bytes()
    mid = mid or message_id(name.split(".")[0])
    return _MESSAGE_ID.sub(f"Message-ID: <{mid}>\n".encode(), raw, count=1), mid


def ce_id(mid: str) -> str:
    """The event id (the records' ce_id header) of the message with that Message-ID."""
    return str(event_id_for("email", mid))


def of_message(records: list[Any], mid: str) -> list[Any]:
    """The records of the message with that Message-ID."""
    wanted = ce_id(mid)
    return [r for r in records if header_map(r.headers).get("ce_id") == wanted]


def decoded(values: list[bytes | None]) -> list[dict[str, Any]]:
    """Opened record values as JSON."""
    return [json.loads(v) for v in values if v is not None]


def new_command_id() -> uuid.UUID:
    """A fresh outbound command id."""
    return uuid.uuid4()


class RecordingRelay:
    """An SMTP relay on loopback (aiosmtpd, in a thread of its own) that keeps what it
    receives: where the hub's outbound mail goes in the tests."""

    def __init__(self, port: int) -> None:
        from aiosmtpd.controller import Controller

        self.received: list[tuple[str, list[str], bytes]] = []
        self.controller = Controller(self, hostname="127.0.0.1", port=port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append(
            (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
        )
        return "250 2.0.0 OK"

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()

    def url(self) -> str:
        """OMNIHUB_SMTP_RELAY_URL of this relay (plain SMTP: it is on loopback)."""
        return f"smtp://127.0.0.1:{self.controller.port}?starttls=0"


def email_env(relay: RecordingRelay) -> dict[str, str]:
    """The email channel's settings of the suite's hub processes."""
    return {
        "EMAIL_INBOXES": INBOXES,
        "EMAIL_SIGNING_KEY": KEY,
        "OMNIHUB_SMTP_RELAY_URL": relay.url(),
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        "POSTMARK_INBOUND_USER": "postmark",
        "POSTMARK_INBOUND_PASSWORD": "s3cret pass",
    }

"""The email adapter's fixtures for the contract suite (tests/test_adapter_contract.py): its
inbound webhooks, Mailgun's signed afresh (it refuses stale and replayed signatures)."""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

from channels.base import InboundRequest, Route
from channels.email import EmailAdapter
from channels.email.webhook_config import InboundWebhookSettings
from tests.channels.email.support import settings
from tests.channels.email.test_webhooks import (
    MAILGUN_KEY,
    basic,
    mailgun_sample,
    mailgun_signature,
    postmark_sample,
)

URL = "https://hub.example/channels/email/"
FORM = "application/x-www-form-urlencoded"


def adapter() -> EmailAdapter:
    """The adapter with the test inboxes, signing key and webhook credentials."""
    hooks = InboundWebhookSettings.model_validate(
        {
            "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
            "POSTMARK_INBOUND_USER": "postmark",
            "POSTMARK_INBOUND_PASSWORD": "s3cret pass",
        }
    )
    data = Path(tempfile.mkdtemp(prefix="email-contract-"))
    return EmailAdapter(settings(data), webhooks=hooks)


def _route(path: str) -> Route:
    return next(r for r in EmailAdapter.routes if r.path == path)


def _mailgun(fields: dict[str, str] | None = None, key: str = MAILGUN_KEY) -> InboundRequest:
    form = dict(parse_qsl(mailgun_sample().decode(), keep_blank_values=True))
    form.update(fields or {})
    signed = dict(mailgun_signature(int(time.time()), uuid.uuid4().hex * 2, key))
    form.update(signed)
    return InboundRequest("POST", URL + "mailgun", {"Content-Type": FORM}, urlencode(form).encode())


def _postmark(body: bytes, auth: str = basic("postmark", "s3cret pass")) -> InboundRequest:
    headers = {"Content-Type": "application/json", "Authorization": auth}
    return InboundRequest("POST", URL + "postmark", headers, body)


def accepted() -> list[tuple[Route, InboundRequest]]:
    """The Mailgun and Postmark samples."""
    return [
        (_route("mailgun"), _mailgun()),
        (_route("postmark"), _postmark(json.dumps(postmark_sample()).encode())),
    ]


def unparseable() -> list[tuple[Route, InboundRequest]]:
    """Authentic, but no message can be made of them."""
    broken = dict(postmark_sample(), Attachments=[{"Name": "x", "Content": "%%% not base64"}])
    return [
        (_route("postmark"), _postmark(b"{not json")),
        (_route("postmark"), _postmark(json.dumps(broken).encode())),
    ]


def forged() -> list[tuple[Route, InboundRequest]]:
    """Signed with another key, wrong credentials, none at all."""
    return [
        (_route("mailgun"), _mailgun(key="key-someone-else")),
        (_route("postmark"), _postmark(b"{}", auth=basic("postmark", "guess"))),
        (_route("postmark"), _postmark(b"{}", auth="")),
        (_route("sendgrid"), InboundRequest("POST", URL + "sendgrid", {}, b"")),
    ]

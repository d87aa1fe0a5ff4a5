"""The inbound webhooks of the mail services companies already use: Mailgun, Postmark and
SendGrid. Pure (no I/O): each provider has a ``verify_<provider>(request, settings)`` that
raises SignatureError unless the request is the provider's, and a ``raw_<provider>(request)``
that returns the raw RFC 5322 message for ``channels.email.mime.parse``, as every other
inbound way does (ParseError with the reason for an authentic request that cannot be read,
UnsupportedMediaType for a wrong body type).

The adapter serves :func:`webhook_routes` and, for a route, calls the pair
``WEBHOOKS[route.path]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from channels.base import InboundRequest, Route
from channels.email.mailgun import raw_mailgun, verify_mailgun
from channels.email.postmark import raw_postmark, verify_postmark
from channels.email.sendgrid import raw_sendgrid, verify_sendgrid
from channels.email.webhook_config import InboundWebhookSettings

__all__ = [
    "WEBHOOKS",
    "InboundWebhook",
    "raw_mailgun",
    "raw_postmark",
    "raw_sendgrid",
    "verify_mailgun",
    "verify_postmark",
    "verify_sendgrid",
    "webhook_routes",
]


class InboundWebhook(NamedTuple):
    """How one provider's webhook is checked and read."""

    verify: Callable[[InboundRequest, InboundWebhookSettings], None]
    raw: Callable[[InboundRequest], bytes]
    summary: str


MAILGUN = InboundWebhook(
    verify_mailgun,
    raw_mailgun,
    "Mailgun route forward(): an inbound email, parsed fields (form, multipart with attachments)",
)
MAILGUN_MIME = InboundWebhook(
    verify_mailgun,
    raw_mailgun,
    "Mailgun route forward() to a URL ending in mime: the inbound email as raw MIME (body-mime)",
)
POSTMARK = InboundWebhook(
    verify_postmark,
    raw_postmark,
    "Postmark inbound webhook: an inbound email as JSON (RawEmail when included), basic auth",
)
SENDGRID = InboundWebhook(
    verify_sendgrid,
    raw_sendgrid,
    "SendGrid Inbound Parse: an inbound email as multipart/form-data (raw MIME or parsed)",
)

#: Route path -> the provider's verify and raw functions.
WEBHOOKS: Mapping[str, InboundWebhook] = {
    "mailgun": MAILGUN,
    "mailgun/mime": MAILGUN_MIME,
    "postmark": POSTMARK,
    "sendgrid": SENDGRID,
}


def webhook_routes(settings: InboundWebhookSettings | None = None) -> tuple[Route, ...]:
    """The POST routes of the three webhooks, bodies up to ``EMAIL_WEBHOOK_MAX_BYTES``."""
    limit = (settings or InboundWebhookSettings()).max_body_bytes
    return tuple(
        Route(path, methods=("POST",), summary=hook.summary, max_body_bytes=limit)
        for path, hook in WEBHOOKS.items()
    )

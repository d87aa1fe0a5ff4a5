"""What every inbound way (SMTP, IMAP, webhooks) does with a raw message: parse, normalise,
store its files, publish; and what it does with one it cannot use: the dead-letter topic,
with the reason and the raw bytes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import StrEnum

from channels.base import BlobStore, ChannelEvent, InboundRequest, Publisher
from channels.email.config import EmailSettings
from channels.email.mime import ParsedEmail, UnparseableEmail, parse
from channels.email.normalise import Envelope, Normalised, NoSender, UnknownBounce, normalise
from channels.email.threads import ThreadSigner
from schemas.events import utcnow

log = logging.getLogger(__name__)

#: The dead-letter stage of what the email channel could not use.
STAGE = "channels/email"


class Outcome(StrEnum):
    """What became of one message."""

    PUBLISHED = "published"
    DEAD_LETTERED = "dead_lettered"
    ECHO = "echo"
    """One of ours, coming back: dropped."""


class Unusable(ValueError):
    """A message that can be no event: dead-letter it with this reason."""


@dataclass(frozen=True)
class Prepared:
    """A message parsed and normalised, ready to store and publish."""

    parsed: ParsedEmail
    normalised: Normalised

    @property
    def events(self) -> list[ChannelEvent]:
        return self.normalised.events


class MailIntake:
    """Parses, stores and publishes raw mail for one adapter."""

    def __init__(self, settings: EmailSettings, signer: ThreadSigner) -> None:
        self.settings = settings
        self.signer = signer

    def prepare(self, raw: bytes, envelope: Envelope) -> Prepared:
        """Parse and normalise (pure); Unusable for mail that can be no event."""
        try:
            parsed = parse(raw, authserv_id=self.settings.authserv_id)
            normalised = normalise(
                parsed, envelope, settings=self.settings, signer=self.signer, received_at=utcnow()
            )
        except (UnparseableEmail, NoSender, UnknownBounce) as exc:
            raise Unusable(str(exc)) from exc
        except ValueError as exc:  # a value the contract refuses (pydantic's ValidationError)
            raise Unusable(f"not a valid interaction: {exc}") from exc
        return Prepared(parsed, normalised)

    async def settle(self, prepared: Prepared, blobs: BlobStore, via: str) -> list[ChannelEvent]:
        """Write the message's files and hand back its events to publish; none for our own
        message coming back (dropped). OSError when the store cannot take the files."""
        if prepared.normalised.echo:
            log.info("email: dropped our own message coming back (%s)", via)
            return []
        files = prepared.normalised.files
        if files:
            await asyncio.gather(*(blobs.put(blob, data) for blob, data in files))
        return prepared.events

    async def take(
        self, raw: bytes, envelope: Envelope, publisher: Publisher, blobs: BlobStore
    ) -> Outcome:
        """Publish one message (or dead-letter it); returns once the broker acknowledged.
        PublishError or OSError: nothing is acknowledged, the sender must try again."""
        try:
            prepared = self.prepare(raw, envelope)
        except Unusable as exc:
            await self.dead_letter(raw, envelope, str(exc), publisher)
            return Outcome.DEAD_LETTERED
        events = await self.settle(prepared, blobs, envelope.via)
        if prepared.normalised.echo:
            return Outcome.ECHO
        if events:
            await publisher.publish(events)
        return Outcome.PUBLISHED

    async def dead_letter(
        self, raw: bytes, envelope: Envelope, reason: str, publisher: Publisher
    ) -> None:
        """Publish the raw message to the dead-letter topic with the reason."""
        log.warning("email: dead-lettered a message from %s: %s", envelope.via, reason)
        request = InboundRequest(
            method=envelope.via.partition(":")[0].upper(),
            url=f"{envelope.via}:",
            headers={
                "Mail-From": envelope.mail_from or "",
                "Rcpt-To": ", ".join(envelope.recipients),
            },
            body=raw,
        )
        await publisher.dead_letter(request, reason, stage=STAGE)

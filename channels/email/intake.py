"""What every inbound way (SMTP, IMAP, webhooks) does with a raw message: parse, normalise,
store its files, publish; and what it does with one it cannot use: the dead-letter topic,
with the reason and the raw bytes. SMTP stages the message as it came and answers at once
(``staged``/``envelope_of``); the processors hand it back to ``read_staged``."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from channels.base import BlobStore, ChannelEvent, InboundRequest, Publisher
from channels.email.config import EmailSettings
from channels.email.mime import ParsedEmail, UnparseableEmail, parse
from channels.email.normalise import Envelope, Normalised, NoSender, UnknownBounce, normalise
from channels.email.threads import ThreadSigner
from schemas import StagedInput
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

    def prepare(
        self, raw: bytes, envelope: Envelope, received_at: datetime | None = None
    ) -> Prepared:
        """Parse and normalise (pure); Unusable for mail that can be no event."""
        try:
            parsed = parse(raw, authserv_id=self.settings.authserv_id)
            normalised = normalise(
                parsed,
                envelope,
                settings=self.settings,
                signer=self.signer,
                received_at=received_at or utcnow(),
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

    def prepare_staged(self, inputs: Sequence[StagedInput]) -> list[Prepared | Unusable]:
        """``prepare`` each staged message (pure, for a worker thread); what cannot be an
        event, whatever the reason, comes back as Unusable (a parser bug must not stop the
        processors' partition)."""
        found: list[Prepared | Unusable] = []
        for staged in inputs:
            try:
                found.append(self.prepare(staged.payload, envelope_of(staged), staged.received_at))
            except Unusable as exc:
                found.append(exc)
            except Exception as exc:  # a message no test foresaw: dead-lettered, never raised
                log.exception("email: could not read a staged message")
                found.append(Unusable(f"unexpected {type(exc).__name__}: {exc}"))
        return found

    async def read_staged(
        self, inputs: Sequence[StagedInput], publisher: Publisher, blobs: BlobStore
    ) -> tuple[list[Outcome], list[ChannelEvent]]:
        """Staged messages parsed in a worker thread, their files stored, the unusable ones
        dead-lettered; each one's outcome, and the events still to publish. OSError or
        PublishError: nothing is done that a retry would not redo the same way."""
        found = await asyncio.to_thread(self.prepare_staged, inputs)
        outcomes: list[Outcome] = []
        events: list[ChannelEvent] = []
        for staged, prepared in zip(inputs, found, strict=True):
            if isinstance(prepared, Unusable):
                await self.dead_letter(
                    staged.payload, envelope_of(staged), str(prepared), publisher
                )
                outcomes.append(Outcome.DEAD_LETTERED)
                continue
            events += await self.settle(prepared, blobs, staged.via)
            outcomes.append(Outcome.ECHO if prepared.normalised.echo else Outcome.PUBLISHED)
        return outcomes, events

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


def staged(adapter: str, raw: bytes, envelope: Envelope) -> StagedInput:
    """A message as it came, with its envelope, to be read later (``read_staged``)."""
    return StagedInput(
        adapter=adapter,
        via=envelope.via,
        order_key=(envelope.mail_from or "")[:1000],
        meta={
            "mail_from": envelope.mail_from or "",
            "recipients": json.dumps(list(envelope.recipients)),
        },
        payload=raw,
    )


def envelope_of(staged: StagedInput) -> Envelope:
    """The envelope ``staged`` recorded (recipients were checked when they arrived)."""
    try:
        recipients = json.loads(staged.meta.get("recipients") or "[]")
    except ValueError:
        recipients = []
    return Envelope(
        via=staged.via,
        mail_from=staged.meta.get("mail_from") or None,
        recipients=tuple(str(r) for r in recipients) if isinstance(recipients, list) else (),
    )

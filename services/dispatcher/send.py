"""Send outbound commands at most once per command id and describe what happened."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from channels.base import ChannelAdapter, SendError, SendRefused
from schemas import (
    DeliveryState,
    DeliveryStatus,
    Direction,
    Interaction,
    Kind,
    OutboundCommand,
    Purpose,
)
from schemas.events import utcnow
from services.customers import consent
from services.dispatcher import metrics

log = logging.getLogger(__name__)

_CLAIM = """
INSERT INTO outbound_messages (command_id, customer_id, channel, state, attempts)
SELECT command_id, customer_id, channel, 'sending', 1
FROM unnest($1::uuid[], $2::uuid[], $3::text[]) AS c(command_id, customer_id, channel)
ON CONFLICT (command_id) DO UPDATE SET attempts = outbound_messages.attempts + 1,
                                       updated_at = now()
RETURNING command_id, state, provider_message_id, last_error, attempts
"""
_RECORD = """
UPDATE outbound_messages o
SET state = r.state, provider_message_id = r.provider_message_id, last_error = r.last_error,
    updated_at = now()
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
     AS r(command_id, state, provider_message_id, last_error)
WHERE o.command_id = r.command_id
"""
_UNCLAIM = """
UPDATE outbound_messages SET attempts = attempts - 1
WHERE command_id = ANY($1::uuid[]) AND state = 'sending' AND attempts > 0
"""


#: The outbound interaction's attribute set when a crash may have sent the message twice.
MAYBE_TWICE = "may_have_been_sent_twice"


@dataclass(frozen=True)
class Outcome:
    """The outbound interaction for the timeline and its delivery state."""

    interaction: Interaction
    status: DeliveryStatus


def _outcome(
    command: OutboundCommand,
    state: DeliveryState,
    provider_id: str | None,
    error_code: str | None = None,
    error: str | None = None,
    *,
    maybe_twice: bool = False,
) -> Outcome:
    now = utcnow()
    provider_ids = {"provider_message_id": provider_id} if provider_id else {}
    interaction = Interaction.create(
        channel=command.channel,
        direction=Direction.OUTBOUND,
        kind=Kind.MESSAGE,
        occurred_at=command.created_at,
        received_at=now,
        identities=[command.to],
        thread=command.thread,
        subject=command.subject,
        text=command.timeline_text or command.text,
        attachments=command.attachments,
        provider_message_id=f"command:{command.command_id}",
        provider_ids=provider_ids,
        source="services/dispatcher",
        customer_id=command.customer_id,
        attributes={
            "command_id": str(command.command_id),
            "requested_by": command.requested_by,
            "in_reply_to": str(command.in_reply_to) if command.in_reply_to else None,
            **({MAYBE_TWICE: True} if maybe_twice else {}),
        },
    )
    status = DeliveryStatus(
        command_id=command.command_id,
        channel=command.channel,
        state=state,
        occurred_at=now,
        provider_message_id=provider_id,
        error_code=error_code,
        error_message=error,
    )
    return Outcome(interaction, status)


def not_served(channel: str, adapters: Mapping[str, ChannelAdapter]) -> str:
    """Why a command on ``channel`` is refused when no adapter ``adapters`` sends on it."""
    served = ", ".join(sorted(adapters)) or "none"
    return (
        f"channel {channel} is not served by this dispatcher (OMNIHUB_CHANNELS; its adapters:"
        f" {served})"
    )


async def dispatch(
    pool: asyncpg.Pool, adapters: Mapping[str, ChannelAdapter], command: OutboundCommand
) -> Outcome:
    """Send ``command`` unless it was already sent; return its timeline entry and state."""
    [outcome] = await dispatch_all(pool, adapters, [command])
    return outcome


async def dispatch_all(
    pool: asyncpg.Pool,
    adapters: Mapping[str, ChannelAdapter],
    commands: Sequence[OutboundCommand],
) -> list[Outcome]:
    """Send each command unless it was already sent, one customer's in order (two quick
    replies must not swap) and different customers' concurrently; their outcomes, in order.

    The database work is the batch's, not each command's: one claim statement, one consent
    read and one record statement whatever the batch's size (a round trip a command kept the
    dispatcher from keeping up with a few hundred replies a second)."""
    first: dict[uuid.UUID, OutboundCommand] = {}
    for command in commands:
        first.setdefault(command.command_id, command)
    firsts = list(first.values())
    async with pool.acquire() as conn:
        claims = await _claim_all(conn, firsts)
        book = await consent.load(conn, {c.customer_id for c in firsts})
    started: set[uuid.UUID] = set()
    sent: dict[uuid.UUID, Outcome] = {}

    async def in_order(group: list[OutboundCommand]) -> None:
        for command in group:
            started.add(command.command_id)
            claim = claims[command.command_id]
            sent[command.command_id] = await _send_claimed(adapters, command, claim, book)

    by_customer: dict[uuid.UUID, list[OutboundCommand]] = {}
    for command in firsts:
        by_customer.setdefault(command.customer_id, []).append(command)
    ended = await asyncio.gather(
        *(in_order(group) for group in by_customer.values()), return_exceptions=True
    )
    failures = [e for e in ended if isinstance(e, BaseException)]
    async with pool.acquire() as conn:
        # what was sent is recorded even when another send failed (the batch is retried)
        await _record_all(conn, [sent[c.command_id] for c in firsts if c.command_id in sent])
        if failures:  # a retry must not take commands never tried for interrupted ones
            unsent = [c.command_id for c in firsts if c.command_id not in started]
            await conn.execute(_UNCLAIM, unsent)
    if failures:
        raise failures[0]
    outcomes: list[Outcome] = []
    for command in commands:
        outcome = sent.pop(command.command_id, None)
        # the same command twice in a batch: the second finds the first's record, as it would
        # in a later batch
        outcomes.append(outcome or await dispatch(pool, adapters, command))
    return outcomes


async def _claim_all(
    conn: asyncpg.Connection, commands: Sequence[OutboundCommand]
) -> dict[uuid.UUID, asyncpg.Record]:
    """Claim distinct commands in one statement (rows locked in id order, as every
    dispatcher locks them)."""
    ordered = sorted(commands, key=lambda c: c.command_id)
    rows = await conn.fetch(
        _CLAIM,
        [c.command_id for c in ordered],
        [c.customer_id for c in ordered],
        [c.channel.value for c in ordered],
    )
    return {r["command_id"]: r for r in rows}


async def _record_all(conn: asyncpg.Connection, outcomes: Sequence[Outcome]) -> None:
    """Record how each distinct command's send ended, in one statement."""
    if not outcomes:
        return
    ordered = sorted(outcomes, key=lambda o: o.status.command_id)
    await conn.execute(
        _RECORD,
        [o.status.command_id for o in ordered],
        [o.status.state.value for o in ordered],
        [o.status.provider_message_id for o in ordered],
        [o.status.error_message for o in ordered],
    )


async def _send_claimed(
    adapters: Mapping[str, ChannelAdapter],
    command: OutboundCommand,
    claim: asyncpg.Record,
    book: consent.ConsentBook,
) -> Outcome:
    """Send a claimed command unless its claim shows it handled (or consent or an adapter
    is missing); its outcome, not yet recorded."""
    if claim["provider_message_id"] is not None or claim["state"] in ("failed", "refused"):
        state = DeliveryState(claim["state"])
        log.info("command %s already handled (%s); not sending again", command.command_id, state)
        return _outcome(command, state, claim["provider_message_id"], error=claim["last_error"])
    # An earlier attempt claimed the command and never recorded how it ended: it died between
    # the claim and the record, maybe after the provider took the message. Providers such as
    # Twilio have no idempotency key, so this attempt sends again and says it may be a repeat.
    maybe_twice = claim["state"] == "sending" and claim["attempts"] > 1
    adapter = next((a for a in adapters.values() if command.channel in a.channels), None)
    if not book.allows(command.customer_id, command.channel, Purpose.SERVICE):
        outcome = _outcome(
            command,
            DeliveryState.REFUSED,
            None,
            "consent_withdrawn",
            f"the customer withdrew consent to {command.channel.value} messages",
        )
    elif adapter is None:
        outcome = _outcome(
            command,
            DeliveryState.REFUSED,
            None,
            "no_adapter",
            not_served(command.channel.value, adapters),
        )
    else:
        started = time.perf_counter()
        try:
            result = await adapter.send(command)
            outcome = _outcome(
                command, result.state, result.provider_message_id, maybe_twice=maybe_twice
            )
            if maybe_twice:
                metrics.MAYBE_TWICE.labels(command.channel.value).inc()
                log.warning(
                    "command %s sent again after an interrupted attempt", command.command_id
                )
        except SendError as exc:
            # an adapter's own refusal (SendRefused: a platform's rule) never reached it
            state = DeliveryState.REFUSED if isinstance(exc, SendRefused) else DeliveryState.FAILED
            outcome = _outcome(command, state, None, exc.code, str(exc))
            metrics.SEND_FAILURES.labels(command.channel.value, exc.code or "unknown").inc()
        finally:
            metrics.SEND_SECONDS.labels(command.channel.value).observe(
                time.perf_counter() - started
            )
    metrics.SENDS.labels(command.channel.value, outcome.status.state.value).inc()
    return outcome

"""Send one outbound command at most once per command id and describe what happened."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
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
VALUES ($1, $2, $3, 'sending', 1)
ON CONFLICT (command_id) DO UPDATE SET attempts = outbound_messages.attempts + 1,
                                       updated_at = now()
RETURNING state, provider_message_id, last_error, attempts
"""
_RECORD = """
UPDATE outbound_messages SET state = $2, provider_message_id = $3, last_error = $4,
                             updated_at = now()
WHERE command_id = $1
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
    async with pool.acquire() as conn:
        claim = await conn.fetchrow(
            _CLAIM, command.command_id, command.customer_id, command.channel.value
        )
    if claim["provider_message_id"] is not None or claim["state"] in ("failed", "refused"):
        state = DeliveryState(claim["state"])
        log.info("command %s already handled (%s); not sending again", command.command_id, state)
        return _outcome(command, state, claim["provider_message_id"], error=claim["last_error"])
    # An earlier attempt claimed the command and never recorded how it ended: it died between
    # the claim and the record, maybe after the provider took the message. Providers such as
    # Twilio have no idempotency key, so this attempt sends again and says it may be a repeat.
    maybe_twice = claim["state"] == "sending" and claim["attempts"] > 1
    adapter = next((a for a in adapters.values() if command.channel in a.channels), None)
    async with pool.acquire() as conn:
        book = await consent.load(conn, [command.customer_id])
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
    status = outcome.status
    metrics.SENDS.labels(command.channel.value, status.state.value).inc()
    async with pool.acquire() as conn:
        await conn.execute(
            _RECORD,
            command.command_id,
            status.state.value,
            status.provider_message_id,
            status.error_message,
        )
    return outcome

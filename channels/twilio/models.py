"""Twilio's payload vocabulary: the webhooks, message and call statuses, and error codes.

Twilio posts its webhooks as ``application/x-www-form-urlencoded`` forms whose parameters are
documented per webhook; the parsers in ``parse.py`` read them by name, so what lives here is
the vocabulary those parameters use.
"""

from __future__ import annotations

from enum import StrEnum

from schemas import DeliveryState


class Webhook(StrEnum):
    """The adapter's webhooks, by their path under ``/channels/twilio/``."""

    SMS = "sms"
    MESSAGE_STATUS = "message-status"
    VOICE = "voice"
    CALL_STATUS = "voice/status"
    RECORDING = "voice/recording"
    TRANSCRIPTION = "voice/transcription"


#: Twilio's MessageStatus values and the hub's delivery state for each.
MESSAGE_STATES: dict[str, DeliveryState] = {
    "accepted": DeliveryState.QUEUED,
    "scheduled": DeliveryState.QUEUED,
    "queued": DeliveryState.QUEUED,
    "sending": DeliveryState.SENDING,
    "sent": DeliveryState.SENT,
    "delivered": DeliveryState.DELIVERED,
    "undelivered": DeliveryState.UNDELIVERED,
    "failed": DeliveryState.FAILED,
    "canceled": DeliveryState.FAILED,
    "read": DeliveryState.READ,
}

#: Twilio's CallStatus values and how the timeline names them.
CALL_STATUSES: dict[str, str] = {
    "queued": "Call queued",
    "initiated": "Call started",
    "ringing": "Call ringing",
    "in-progress": "Call answered",
    "completed": "Call ended",
    "busy": "Line busy",
    "no-answer": "No answer",
    "failed": "Call failed",
    "canceled": "Call canceled before it was answered",
}

#: Twilio error codes seen on messages, and what they mean for whoever reads the timeline.
ERRORS: dict[str, str] = {
    "20003": "Twilio refused the credentials (check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)",
    "20429": "Twilio is rate limiting the account (too many requests)",
    "21211": "The recipient's number is not a valid phone number",
    "21408": "Sending SMS to this region is not enabled on the Twilio account",
    "21606": "The sender number cannot send SMS to this destination",
    "21610": "The recipient has unsubscribed (replied STOP) and Twilio blocks messages to them",
    "21612": "Twilio cannot route a message from this sender to this number",
    "21614": "The recipient's number is not a mobile number",
    "21617": "The message is longer than Twilio's 1600-character limit",
    "30001": "Twilio's queue for the sender overflowed; the message was not sent",
    "30002": "The Twilio account is suspended",
    "30003": "Unreachable destination handset: the phone is off or out of coverage",
    "30004": "The message was blocked by the carrier or the recipient",
    "30005": "Unknown destination handset: the number does not exist or is no longer in service",
    "30006": "The number is a landline or belongs to a carrier that cannot receive SMS",
    "30007": "The carrier filtered the message as spam or policy violation",
    "30008": "Unknown error from the carrier",
    "30009": "A segment of the message went missing on the way",
    "30010": "The message price exceeded the maximum price set for it",
    "30032": "The sender is a toll-free number that is not verified",
    "30034": "The sender is a US number not registered for A2P 10DLC messaging",
}


def describe_error(code: str, provider_message: str | None = None) -> str:
    """A readable explanation of a Twilio error code, ending with the code itself."""
    meaning = ERRORS.get(code) or provider_message or "Twilio reported an error"
    return f"{meaning} (Twilio error {code})"

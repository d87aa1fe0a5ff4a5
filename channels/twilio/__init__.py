"""Twilio: SMS and MMS, phone calls and voicemail (webhooks in), SMS (REST API out)."""

from channels.twilio.adapter import TwilioAdapter

ADAPTER = TwilioAdapter

__all__ = ["ADAPTER", "TwilioAdapter"]

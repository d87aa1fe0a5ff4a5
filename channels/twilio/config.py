"""Settings of the Twilio channel (SMS and voice), from the environment.

The Twilio credentials keep the names Twilio's own tools use (``TWILIO_*``); the public base
URL is the hub's ``OMNIHUB_PUBLIC_URL``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the adapter's webhooks are mounted on the hub's HTTP port.
MOUNT = "/channels/twilio"

DEFAULT_HELP = (
    "You are writing to our customer service: reply with your question and an agent will "
    "answer. Reply STOP to stop receiving messages, START to receive them again."
)
DEFAULT_GREETING = (
    "Hello. Nobody can take your call right now. Please leave a message after the tone, "
    "and we will call you back."
)


class TwilioSettings(BaseSettings):
    """Credentials, sender, public URL and voice prompts of the Twilio channel."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    account_sid: str | None = Field(
        default=None, alias="TWILIO_ACCOUNT_SID", description="the account (AC...) that sends"
    )
    auth_token: SecretStr | None = Field(
        default=None,
        alias="TWILIO_AUTH_TOKEN",
        description="signs Twilio's webhooks (X-Twilio-Signature) and authenticates the REST API",
    )
    from_number: str | None = Field(
        default=None, alias="TWILIO_FROM_NUMBER", description="sender of outbound SMS (E.164)"
    )
    messaging_service_sid: str | None = Field(
        default=None,
        alias="TWILIO_MESSAGING_SERVICE_SID",
        description="send through this Messaging Service (MG...) instead of, or with, a number",
    )
    public_url: str | None = Field(
        default=None,
        alias="OMNIHUB_PUBLIC_URL",
        description="the hub's base URL as Twilio calls it (signatures and callback URLs)",
    )
    help_text: str = Field(
        default=DEFAULT_HELP,
        alias="TWILIO_HELP_TEXT",
        max_length=1600,
        description="the SMS answer to HELP (and INFO)",
    )
    voice_greeting: str = Field(
        default=DEFAULT_GREETING,
        alias="TWILIO_VOICE_GREETING",
        max_length=4096,
        description="what callers hear before the voicemail beep",
    )
    voice_language: str = Field(
        default="en-US", alias="TWILIO_VOICE_LANGUAGE", description="language of <Say>"
    )
    voicemail_max_seconds: int = Field(
        default=120,
        ge=1,
        le=14_400,
        alias="TWILIO_VOICEMAIL_MAX_SECONDS",
        description="Longest voicemail recorded (`<Record maxLength>`), seconds",
    )
    api_base_url: str = Field(
        default="https://api.twilio.com",
        alias="TWILIO_API_BASE_URL",
        description="base URL of Twilio's REST API (changed only to test against a stand-in)",
    )
    send_timeout: float = Field(
        default=10.0,
        gt=0,
        alias="TWILIO_SEND_TIMEOUT",
        description="Seconds Twilio may take to answer a send",
    )
    send_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        alias="TWILIO_SEND_ATTEMPTS",
        description="Attempts in all when Twilio answers 429 or 503, or cannot be connected to",
    )
    send_backoff: float = Field(
        default=0.5, gt=0, alias="TWILIO_SEND_BACKOFF", description="First retry delay, seconds"
    )
    max_body_bytes: int = Field(
        default=65_536,
        ge=1024,
        alias="TWILIO_MAX_BODY_BYTES",
        description="Largest webhook body read (413 above)",
    )

    def token(self) -> str | None:
        """The auth token in clear, or None when it is not configured."""
        return self.auth_token.get_secret_value() if self.auth_token else None

    def webhook_url(self, path: str) -> str | None:
        """The public URL of one of the adapter's webhooks, e.g. ``/message-status``."""
        if not self.public_url:
            return None
        return f"{self.public_url.rstrip('/')}{MOUNT}{path}"

    def missing(self) -> list[str]:
        """The settings the adapter cannot work without that are not set."""
        missing = [
            name
            for name, value in (
                ("TWILIO_ACCOUNT_SID", self.account_sid),
                ("TWILIO_AUTH_TOKEN", self.token()),
                ("OMNIHUB_PUBLIC_URL", self.public_url),
            )
            if not value
        ]
        if not self.from_number and not self.messaging_service_sid:
            missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
        return missing

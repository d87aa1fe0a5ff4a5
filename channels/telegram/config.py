"""Settings of the Telegram channel (one bot), from the environment.

The bot token is the Bot API's only credential: it goes in the path of every call
(``https://api.telegram.org/bot<token>/<method>``), and its number before the colon is the
bot's id, which scopes the customers' Telegram identities (a user id means something only to
the bot it wrote to).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the adapter's webhook is mounted on the hub's HTTP port.
MOUNT = "/channels/telegram"
#: A bot token as BotFather issues it: the bot's id, a colon, the secret part.
TOKEN = re.compile(r"^([0-9]{1,20}):[A-Za-z0-9_-]{20,100}$")
#: What Telegram allows in setWebhook's secret_token.
SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
#: The largest file the Bot API lets a bot download (getFile).
BOT_API_DOWNLOAD_LIMIT = 20 * 1024 * 1024

GroupPolicy = Literal["ignore", "record"]


class TelegramSettings(BaseSettings):
    """The bot's token, the webhook's secret, the Bot API's address, what groups become."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    bot_token: SecretStr | None = Field(
        default=None,
        alias="TELEGRAM_BOT_TOKEN",
        description="the bot's token from BotFather (`123456789:AA...`); its number is the bot id",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        alias="TELEGRAM_WEBHOOK_SECRET",
        description="the `secret_token` given to setWebhook (1-256 of A-Z a-z 0-9 _ -), checked "
        "against X-Telegram-Bot-Api-Secret-Token",
    )
    api_base_url: str = Field(
        default="https://api.telegram.org",
        alias="TELEGRAM_API_BASE_URL",
        description="base URL of the Bot API (changed only to test against a stand-in); media "
        "are fetched from its host only",
    )
    groups: GroupPolicy = Field(
        default="ignore",
        alias="TELEGRAM_GROUPS",
        description="messages in groups, supergroups and channels: `ignore` (dead-lettered with "
        "the reason) or `record` (on the sender's timeline)",
    )
    max_media_bytes: int = Field(
        default=BOT_API_DOWNLOAD_LIMIT,
        ge=1024,
        le=BOT_API_DOWNLOAD_LIMIT,
        alias="TELEGRAM_MAX_MEDIA_BYTES",
        description="Largest file fetched into the blob store (the Bot API serves 20 MB at most)",
    )
    send_timeout: float = Field(
        default=10.0,
        gt=0,
        alias="TELEGRAM_SEND_TIMEOUT",
        description="Seconds the Bot API may take to answer a call",
    )
    send_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        alias="TELEGRAM_SEND_ATTEMPTS",
        description="Attempts in all at a call answered 429 or 5xx, or that cannot connect",
    )
    send_backoff: float = Field(
        default=0.5, gt=0, alias="TELEGRAM_SEND_BACKOFF", description="First retry delay, seconds"
    )
    max_retry_after: float = Field(
        default=60.0,
        ge=0,
        alias="TELEGRAM_MAX_RETRY_AFTER",
        description="Longest `retry_after` waited inside one send; a longer one fails the send "
        "as rate limited",
    )

    @field_validator("bot_token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not TOKEN.match(value.get_secret_value()):
            raise ValueError("not a bot token as BotFather issues them (<bot id>:<secret>)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not SECRET.match(value.get_secret_value()):
            raise ValueError("Telegram takes 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _base_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("an http(s) URL")
        return value.rstrip("/")

    def token(self) -> str | None:
        """The bot token in clear, or None when it is not configured."""
        return self.bot_token.get_secret_value() if self.bot_token else None

    def secret(self) -> str | None:
        """The webhook secret in clear, or None when it is not configured."""
        return self.webhook_secret.get_secret_value() if self.webhook_secret else None

    @property
    def bot_id(self) -> str | None:
        """The bot's id, the number its token starts with."""
        token = self.token()
        match = TOKEN.match(token) if token else None
        return match.group(1) if match else None

    @property
    def api_host(self) -> str:
        """The Bot API's host, the only one media are fetched from."""
        return (urlsplit(self.api_base_url).hostname or "").lower()

    def missing(self) -> list[str]:
        """The settings the adapter cannot work without that are not set."""
        return [
            name
            for name, value in (
                ("TELEGRAM_BOT_TOKEN", self.token()),
                ("TELEGRAM_WEBHOOK_SECRET", self.secret()),
            )
            if not value
        ]

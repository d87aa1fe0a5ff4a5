"""Settings of the X channel (one account's direct messages), from the environment.

X delivers direct messages by webhook only to apps on its paid enterprise Account Activity
API, so the channel is off unless ``X_ENABLED`` says otherwise. The app's consumer secret
answers X's CRC challenge and checks every webhook's signature; the account's OAuth 1.0a
access token (or an OAuth 2.0 user-context token) sends replies and fetches DM media.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the adapter's webhook is mounted on the hub's HTTP port.
MOUNT = "/channels/x"
#: X's own hosts for direct-message media: ton.twitter.com (photos, behind user-context
#: auth), pbs.twimg.com (previews, GIFs), video.twimg.com (DM videos).
MEDIA_HOSTS = "ton.twitter.com,pbs.twimg.com,video.twimg.com"
#: An X user id: a decimal snowflake.
USER_ID = re.compile(r"^[0-9]{1,20}$")


class XSettings(BaseSettings):
    """The switch, the app's keys, the account's tokens, X's API address and limits."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    enabled: bool = Field(
        default=False,
        alias="X_ENABLED",
        description="serve X direct messages: needs X's paid enterprise Account Activity API; "
        "off, `omnihub up` and an empty OMNIHUB_CHANNELS leave the adapter out, and a process "
        "that names it answers 403 and sends nothing",
    )
    consumer_key: str | None = Field(
        default=None,
        alias="X_CONSUMER_KEY",
        description="the app's API key (OAuth 1.0a consumer key)",
    )
    consumer_secret: SecretStr | None = Field(
        default=None,
        alias="X_CONSUMER_SECRET",
        description="the app's API key secret: answers the CRC challenge, checks "
        "x-twitter-webhooks-signature and signs OAuth 1.0a requests",
    )
    access_token: SecretStr | None = Field(
        default=None,
        alias="X_ACCESS_TOKEN",
        description="the account's OAuth 1.0a access token (Read, Write and Direct Messages)",
    )
    access_token_secret: SecretStr | None = Field(
        default=None,
        alias="X_ACCESS_TOKEN_SECRET",
        description="the account's OAuth 1.0a access token secret",
    )
    oauth2_user_token: SecretStr | None = Field(
        default=None,
        alias="X_OAUTH2_USER_TOKEN",
        description="instead of the OAuth 1.0a token: an OAuth 2.0 user-context access token "
        "(dm.write dm.read tweet.read users.read), kept fresh outside the hub (it lasts 2 h)",
    )
    user_id: str | None = Field(
        default=None,
        alias="X_USER_ID",
        description="the account's user id (`for_user_id` of its webhooks); set, events for "
        "another account are dead-lettered",
    )
    app_id: str | None = Field(
        default=None,
        alias="X_APP_ID",
        description="the app's id: DMs the account sent through it (`source_app_id`) are the "
        "hub's own replies echoed back, dropped",
    )
    api_base_url: str = Field(
        default="https://api.x.com",
        alias="X_API_BASE_URL",
        description="base URL of X's API (changed only to test against a stand-in)",
    )
    media_hosts: str = Field(
        default=MEDIA_HOSTS,
        alias="X_MEDIA_HOSTS",
        description="hosts DM media are fetched from, comma-separated (X's own; changed only "
        "to test against a stand-in)",
    )
    max_media_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        alias="X_MAX_MEDIA_BYTES",
        description="Largest DM media file fetched into the blob store",
    )
    send_timeout: float = Field(
        default=10.0, gt=0, alias="X_SEND_TIMEOUT", description="Seconds X may take to answer"
    )
    send_attempts: int = Field(
        default=3,
        ge=1,
        le=10,
        alias="X_SEND_ATTEMPTS",
        description="Attempts in all at a call answered 429 or 5xx, or that cannot connect",
    )
    send_backoff: float = Field(
        default=0.5, gt=0, alias="X_SEND_BACKOFF", description="First retry delay, seconds"
    )
    max_retry_after: float = Field(
        default=60.0,
        ge=0,
        alias="X_MAX_RETRY_AFTER",
        description="Longest wait for X's rate limit to reset (`x-rate-limit-reset`, "
        "`retry-after`) inside one send; a longer one fails the send as rate limited",
    )
    health_check_seconds: float = Field(
        default=300.0,
        ge=0,
        alias="X_HEALTH_CHECK_SECONDS",
        description="How often health asks X whether the account's token still works "
        "(GET /2/users/me); 0: never, only what sends learn",
    )

    @field_validator("api_base_url")
    @classmethod
    def _base_shape(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("an http(s) URL")
        return value.rstrip("/")

    @field_validator("user_id", "app_id")
    @classmethod
    def _numeric(cls, value: str | None) -> str | None:
        if value is not None and not USER_ID.match(value.strip()):
            raise ValueError("X ids are decimal numbers")
        return value.strip() if value is not None else None

    def secret(self) -> str | None:
        """The consumer secret in clear, or None when it is not configured."""
        return self.consumer_secret.get_secret_value() if self.consumer_secret else None

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts media are fetched from."""
        return tuple(h.strip().lower() for h in self.media_hosts.split(",") if h.strip())

    @property
    def schemes(self) -> tuple[str, ...]:
        """https, and http only against a stand-in on http (tests)."""
        return ("https", "http") if self.api_base_url.startswith("http:") else ("https",)

    def oauth1(self) -> tuple[str, str, str, str] | None:
        """Consumer key and secret, access token and secret, when all four are set."""
        parts = (
            self.consumer_key,
            self.secret(),
            self.access_token.get_secret_value() if self.access_token else None,
            self.access_token_secret.get_secret_value() if self.access_token_secret else None,
        )
        if all(parts):
            return (str(parts[0]), str(parts[1]), str(parts[2]), str(parts[3]))
        return None

    def bearer(self) -> str | None:
        """The OAuth 2.0 user-context token in clear, or None."""
        return self.oauth2_user_token.get_secret_value() if self.oauth2_user_token else None

    def missing(self) -> list[str]:
        """The settings the adapter cannot work without that are not set."""
        missing = [] if self.secret() else ["X_CONSUMER_SECRET"]
        if self.bearer() is None and self.oauth1() is None:
            missing.append(
                "X_CONSUMER_KEY, X_ACCESS_TOKEN and X_ACCESS_TOKEN_SECRET (or X_OAUTH2_USER_TOKEN)"
            )
        return missing


def switched_on() -> bool:
    """Whether ``X_ENABLED`` is on; a configuration that does not validate counts as on, so
    building the adapter names what is wrong instead of the channel silently missing."""
    try:
        return XSettings().enabled
    except ValidationError:
        return True

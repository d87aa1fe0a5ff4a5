"""Settings of the Meta channels (Messenger, Instagram, WhatsApp Cloud API), from the
environment. Secrets are typed ``SecretStr`` so deploys keep them out of ConfigMaps."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Where the adapter's webhook is mounted on the hub's HTTP port.
MOUNT = "/channels/meta"
#: Meta's CDN hosts that serve the files of Messenger and Instagram messages, and WhatsApp's
#: media downloads (``lookaside.fbsbx.com``); nothing else is ever fetched.
MEDIA_HOSTS = ("fbcdn.net", "fbsbx.com", "cdninstagram.com", "whatsapp.net")


class MetaSettings(BaseSettings):
    """App credentials, tokens, the Graph API's address and the media limits."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    verify_token: SecretStr | None = Field(
        default=None,
        alias="META_VERIFY_TOKEN",
        description="the Verify Token typed in the app's webhook settings (subscription check)",
    )
    app_secret: SecretStr | None = Field(
        default=None,
        alias="META_APP_SECRET",
        description="the app secret: signs every webhook (X-Hub-Signature-256)",
    )
    app_id: str | None = Field(
        default=None,
        alias="META_APP_ID",
        description="the app's id: echoes of messages it sent (the hub's replies) are dropped",
    )
    access_token: SecretStr | None = Field(
        default=None,
        alias="META_ACCESS_TOKEN",
        description="Page access token for Messenger and Instagram replies (pages without "
        "their own in META_PAGE_TOKENS)",
    )
    page_tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        alias="META_PAGE_TOKENS",
        description="JSON: page or Instagram account id -> its access token",
    )
    instagram_pages: dict[str, str] = Field(
        default_factory=dict,
        alias="META_INSTAGRAM_PAGES",
        description="JSON: Instagram account id -> the Facebook page it is linked to (replies "
        "go through /{page-id}/messages); unlisted accounts send as themselves",
    )
    whatsapp_token: SecretStr | None = Field(
        default=None,
        alias="META_WHATSAPP_TOKEN",
        description="the WhatsApp Cloud API access token (a system user's)",
    )
    whatsapp_phone_number_id: str | None = Field(
        default=None,
        alias="META_WHATSAPP_PHONE_NUMBER_ID",
        description="the WhatsApp business phone number id replies are sent from",
    )
    graph_base_url: str = Field(
        default="https://graph.facebook.com",
        alias="META_GRAPH_BASE_URL",
        description="base URL of the Graph API (changed only to test against a stand-in)",
    )
    graph_version: str = Field(
        default="v21.0",
        pattern=r"^v[0-9]{1,3}\.[0-9]{1,2}$",
        alias="META_GRAPH_VERSION",
        description="Graph API version of every call",
    )
    media_hosts: list[str] = Field(
        default_factory=lambda: list(MEDIA_HOSTS),
        alias="META_MEDIA_HOSTS",
        description="hosts (and their subdomains) media is fetched from; JSON list",
    )
    media_insecure_http: bool = Field(
        default=False,
        alias="META_MEDIA_INSECURE_HTTP",
        description="also fetch media over plain http (tests' loopback stand-in only)",
    )
    media_max_bytes: int = Field(
        default=25 * 1024 * 1024,
        ge=1024,
        alias="META_MEDIA_MAX_BYTES",
        description="largest file fetched from Meta (a larger one is kept as unavailable)",
    )
    send_timeout: float = Field(
        default=10.0, gt=0, alias="META_SEND_TIMEOUT", description="Seconds Meta may take"
    )
    send_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        alias="META_SEND_ATTEMPTS",
        description="Attempts in all when Meta throttles (429, codes 4, 80007, 130429) or "
        "cannot be connected to",
    )
    send_backoff: float = Field(
        default=1.0, gt=0, alias="META_SEND_BACKOFF", description="First retry delay, seconds"
    )
    health_probe_seconds: float = Field(
        default=300.0,
        ge=0,
        alias="META_HEALTH_PROBE_SECONDS",
        description="How long a token check (GET /me) is trusted by /readyz; 0: no check",
    )
    max_body_bytes: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        alias="META_MAX_BODY_BYTES",
        description="Largest webhook body read (413 above)",
    )

    def secret(self) -> bytes | None:
        """The app secret's bytes, None when not configured."""
        return self.app_secret.get_secret_value().encode() if self.app_secret else None

    def page_token(self, account: str) -> str | None:
        """The token that sends as page or Instagram account ``account``."""
        token = self.page_tokens.get(account) or self.access_token
        return token.get_secret_value() if token else None

    def wa_token(self) -> str | None:
        """The WhatsApp token in clear, None when not set."""
        return self.whatsapp_token.get_secret_value() if self.whatsapp_token else None

    def graph(self, path: str) -> str:
        """The URL of a Graph API path (``/me``) at the configured version."""
        return f"{self.graph_base_url.rstrip('/')}/{self.graph_version}{path}"

    def missing(self) -> list[str]:
        """The settings without which nothing can be received."""
        return [
            name
            for name, value in (
                ("META_VERIFY_TOKEN", self.verify_token),
                ("META_APP_SECRET", self.app_secret),
            )
            if value is None
        ]

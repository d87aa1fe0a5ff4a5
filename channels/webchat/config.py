"""Settings of the web chat channel: the sites that embed the widget (their origins, name,
colours and identity-verification secret) and the key visitor ids are signed with."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base.keys import checked_key, key_or_file
from channels.base.net import loopback
from schemas import Department

KEY_FILE = "webchat-visitors.key"
_ORIGIN = re.compile(r"^(https?)://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(:[0-9]{1,5})?$")


class Site(BaseModel):
    """One website that embeds the widget."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", description="Short id the widget names")
    name: str = Field(min_length=1, max_length=100, description="The company name shown")
    origins: tuple[str, ...] = Field(
        min_length=1,
        description="Pages allowed to open the chat: https://shop.example (http on loopback)",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="HMAC-SHA256 key the site's backend signs its signed-in users with",
    )
    require_verification: bool = Field(
        default=False, description="Refuse visitors the site's backend did not sign"
    )
    colour: str = Field(default="#1f6feb", pattern=r"^#[0-9a-fA-F]{6}$")
    department: Department | None = Field(
        default=None,
        description=(
            "The department a new visitor's chat is for, while none of their messages is"
            " routed yet (whose agents' presence the widget shows); unset: any agent"
        ),
    )

    @field_validator("origins")
    @classmethod
    def _origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            found = _ORIGIN.match(origin)
            if not found:
                raise ValueError(f"not an origin (scheme://host[:port]): {origin!r}")
            if found.group(1) == "http" and not loopback(found.group(2)):
                raise ValueError(f"http origins only on loopback: {origin!r}")
        return tuple(o.lower() for o in value)

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_key(value, "a site's secret")


class WebchatSettings(BaseSettings):
    """The sites, the visitor-id key and the limits of one message."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    sites: tuple[Site, ...] = Field(
        default=(),
        alias="WEBCHAT_SITES",
        description="JSON list of the sites that embed the widget: id, name, origins, secret, "
        "require_verification, colour (none: every connection is refused)",
    )
    visitor_key: SecretStr | None = Field(
        default=None,
        alias="WEBCHAT_VISITOR_KEY",
        description="Secret that signs visitor ids (32+ characters); unset, a key file is "
        "made under OMNIHUB_DATA_DIR",
    )
    max_message_chars: int = Field(
        default=4000, ge=1, le=100_000, alias="WEBCHAT_MAX_MESSAGE_CHARS"
    )
    max_file_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=1024,
        le=10 * 1024 * 1024,
        alias="WEBCHAT_MAX_FILE_BYTES",
        description="Largest file a visitor may send (images and PDFs only)",
    )
    scan_command: str | None = Field(
        default=None,
        alias="WEBCHAT_SCAN_COMMAND",
        description=(
            "Virus scan of visitors' files: a command reading the file on stdin, exit 0 clean,"
            " 1 infected, else an error (file refused): e.g. clamdscan --no-summary --stream -"
        ),
    )
    messages_burst: int = Field(
        default=10,
        ge=1,
        le=10_000,
        alias="WEBCHAT_MESSAGES_BURST",
        description="Messages a visitor may send at once (per address and web process)",
    )
    messages_every: float = Field(
        default=2.0,
        gt=0,
        le=3600,
        alias="WEBCHAT_MESSAGES_EVERY",
        description="Then one message every this many seconds",
    )
    visitors_burst: int = Field(
        default=60,
        ge=1,
        le=100_000,
        alias="WEBCHAT_VISITORS_BURST",
        description="Chats one address may open at once (an office behind one NAT: many)",
    )
    visitors_every: float = Field(
        default=1.0,
        gt=0,
        le=3600,
        alias="WEBCHAT_VISITORS_EVERY",
        description="Then one more every this many seconds",
    )
    hello_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        alias="WEBCHAT_HELLO_SECONDS",
        description="How long a new connection has to say which site and visitor it is",
    )
    data_dir: Path = Field(default=Path(".omnihub"), alias="OMNIHUB_DATA_DIR")

    @field_validator("sites")
    @classmethod
    def _unique(cls, value: tuple[Site, ...]) -> tuple[Site, ...]:
        if len({s.id for s in value}) != len(value):
            raise ValueError("two sites share an id")
        return value

    @field_validator("visitor_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        return checked_key(value, "WEBCHAT_VISITOR_KEY")

    def site(self, site_id: str) -> Site | None:
        """The site with that id, if configured."""
        return next((s for s in self.sites if s.id == site_id), None)

    def key(self) -> bytes:
        """The visitor-id key: the setting, else the development key file."""
        return key_or_file(self.visitor_key, self.data_dir / KEY_FILE)

"""Settings of the IMAP poller: the hosted mailboxes (Microsoft 365, Gmail, any IMAP server)
the hub reads mail from, how often, and how much at a time.

The accounts are one JSON list (``EMAIL_IMAP_ACCOUNTS``) because each carries several fields
and there may be any number of them; each account's ``name`` prefixes its state keys, so
renaming an account makes the hub read its folders again from the start.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base.net import loopback

#: RFC 2177: a client re-issues IDLE at least every 29 minutes, so no interval is longer.
MAX_POLL_SECONDS = 29 * 60
#: Ports by security when an account names none (RFC 8314: 993 implicit TLS; 143 plain).
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "none": 143}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class OAuth2Refresh(BaseModel):
    """Where and how an account gets its XOAUTH2 access tokens (RFC 6749 6, the refresh
    token grant): Microsoft 365's and Gmail's last about an hour, so a fixed one stops
    working; the app registration gives the client id (and secret) and the first consent the
    refresh token."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    token_url: str = Field(
        description="The provider's token endpoint, e.g. Microsoft's "
        "https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token or Google's "
        "https://oauth2.googleapis.com/token"
    )
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: SecretStr | None = Field(default=None, description="None for a public client")
    refresh_token: SecretStr = Field(description="From the mailbox owner's consent")
    scope: str | None = Field(
        default=None,
        max_length=1000,
        description="Asked with each refresh where the provider wants it, e.g. "
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    )

    @field_validator("token_url")
    @classmethod
    def _https(cls, value: str) -> str:
        scheme, _, rest = value.partition("://")
        host = rest.split("/", 1)[0].rsplit(":", 1)[0] if rest else ""
        if scheme == "https" and host:
            return value
        if scheme == "http" and host and loopback(host):
            return value
        raise ValueError("token_url must be https (http only on loopback)")


class ImapAccount(BaseModel):
    """One mailbox the hub polls, with what it does to a message once imported."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(
        description="Unique short name: the prefix of the account's state keys and origins"
    )
    host: str = Field(min_length=1, max_length=253, description="IMAP server host name")
    port: int = Field(
        ge=1, le=65535, description="IMAP port (default 993 for tls, 143 for starttls and none)"
    )
    security: Literal["tls", "starttls", "none"] = Field(
        default="tls",
        description="tls: implicit TLS; starttls: upgrade before login; none: loopback only",
    )
    user: str = Field(min_length=1, description="Login name (often the address)")
    password: SecretStr | None = Field(default=None, description="Password for LOGIN")
    oauth2_token: SecretStr | None = Field(
        default=None,
        description="A fixed OAuth 2 access token for XOAUTH2 (it expires: prefer oauth2)",
    )
    oauth2: OAuth2Refresh | None = Field(
        default=None, description="XOAUTH2 with access tokens refreshed as they expire"
    )
    folders: tuple[str, ...] = Field(
        default=("INBOX",), min_length=1, description="Folders read, each on its own connection"
    )
    quarantine_folder: str | None = Field(
        default=None, description="Where messages that cannot be imported are moved, if set"
    )
    mark_seen: bool = Field(default=True, description="Flag imported messages \\Seen")
    move_to: str | None = Field(
        default=None, description="Folder imported messages are moved to, if set"
    )

    @model_validator(mode="before")
    @classmethod
    def _default_port(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("port") is None:
            return {**data, "port": DEFAULT_PORTS.get(str(data.get("security", "tls")), 993)}
        return data

    @field_validator("name")
    @classmethod
    def _name_valid(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' and '-' only (at most 64), no '/'")
        return value

    @field_validator("folders")
    @classmethod
    def _folders_valid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for folder in value:
            _folder_valid(folder)
        if len(set(value)) != len(value):
            raise ValueError("a folder is named twice")
        return value

    @field_validator("quarantine_folder", "move_to")
    @classmethod
    def _other_folder_valid(cls, value: str | None) -> str | None:
        return None if value is None else _folder_valid(value)

    @model_validator(mode="after")
    def _consistent(self) -> ImapAccount:
        given = [v for v in (self.password, self.oauth2_token, self.oauth2) if v is not None]
        if len(given) != 1:
            raise ValueError("give one of password, oauth2 or oauth2_token")
        if self.security == "none" and not loopback(self.host):
            raise ValueError("security 'none' sends the password in clear: loopback hosts only")
        for folder in (self.move_to, self.quarantine_folder):
            if folder is not None and folder in self.folders:
                raise ValueError(f"{folder!r} is both read and moved to: mail would loop")
        return self


def _folder_valid(folder: str) -> str:
    if not folder or len(folder) > 255 or _CONTROL.search(folder):
        raise ValueError(f"not a folder name: {folder!r}")
    return folder


class ImapSettings(BaseSettings):
    """The IMAP accounts and how the poller paces itself."""

    # hide_input_in_errors: a validation error must not print a password into the logs
    model_config = SettingsConfigDict(
        extra="ignore", populate_by_name=True, hide_input_in_errors=True
    )

    accounts: tuple[ImapAccount, ...] = Field(
        default=(),
        alias="EMAIL_IMAP_ACCOUNTS",
        description="JSON list of mailboxes to poll: name, host, port, security "
        "(tls|starttls|none), user, password or oauth2 (token_url, client_id, client_secret, "
        "refresh_token, scope) or oauth2_token, folders, quarantine_folder, "
        "mark_seen, move_to",
    )
    poll_seconds: float = Field(
        default=60.0,
        gt=0,
        le=MAX_POLL_SECONDS,
        alias="EMAIL_IMAP_POLL_SECONDS",
        description="Seconds between polls of a server without IDLE; with IDLE, how often "
        "the folder is checked anyway (at most 29 min, RFC 2177)",
    )
    batch: int = Field(
        default=50,
        ge=1,
        le=1000,
        alias="EMAIL_IMAP_BATCH",
        description="Messages fetched per round; more wait for the next round, at once",
    )
    max_message_bytes: int = Field(
        default=26_214_400,
        ge=1024,
        alias="EMAIL_IMAP_MAX_MESSAGE_BYTES",
        description="Larger messages are quarantined with their header, never fetched whole",
    )

    @field_validator("accounts")
    @classmethod
    def _names_unique(cls, value: tuple[ImapAccount, ...]) -> tuple[ImapAccount, ...]:
        names = [account.name for account in value]
        if len(set(names)) != len(names):
            raise ValueError("two accounts share a name")
        return value

"""Settings of the email channel's outbound side: the SMTP relay replies are handed to, how
sends are retried, the DKIM key they are signed with and the cap on automatic mail.

The relay is one URL (``OMNIHUB_SMTP_RELAY_URL``) or separate ``EMAIL_RELAY_*`` variables;
a separate variable that is set overrides that part of the URL, so the password can live in
a secret of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Security = Literal["starttls", "tls", "none"]

#: The port each kind of connection uses unless one is given (RFC 8314, RFC 6409, RFC 5321).
DEFAULT_PORTS: dict[Security, int] = {"tls": 465, "starttls": 587, "none": 25}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class RelayURL:
    """The parts of ``OMNIHUB_SMTP_RELAY_URL``; None where the URL says nothing."""

    host: str | None = None
    port: int | None = None
    user: str | None = None
    password: str | None = None
    security: Security | None = None


@dataclass(frozen=True)
class Relay:
    """Where and how to connect, the URL and the separate variables combined."""

    host: str
    port: int
    security: Security
    user: str | None
    password: str | None


def parse_relay_url(url: str) -> RelayURL:
    """``smtp://user:pass@host:587?starttls=1`` or ``smtps://host:465`` to its parts.

    ``smtps`` is implicit TLS; ``smtp`` is STARTTLS unless ``?starttls=0`` (or
    ``?security=none``) says the relay is plain, e.g. a local MTA on loopback. ValueError
    names what is wrong, so a bad URL stops the process at start-up.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(
            f"OMNIHUB_SMTP_RELAY_URL: scheme must be smtp or smtps, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ValueError("OMNIHUB_SMTP_RELAY_URL names no host")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"OMNIHUB_SMTP_RELAY_URL: {exc}") from None
    query = {key.lower(): value.strip().lower() for key, value in parse_qsl(parts.query)}
    security: Security = "tls" if parts.scheme == "smtps" else "starttls"
    if "security" in query:
        if query["security"] not in DEFAULT_PORTS:
            raise ValueError("OMNIHUB_SMTP_RELAY_URL: security must be starttls, tls or none")
        security = query["security"]
    elif "starttls" in query and parts.scheme == "smtp":
        if query["starttls"] in _FALSE:
            security = "none"
        elif query["starttls"] not in _TRUE:
            raise ValueError("OMNIHUB_SMTP_RELAY_URL: starttls must be 1 or 0")
    return RelayURL(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        security=security,
    )


class RelaySettings(BaseSettings):
    """The relay, retries, DKIM signing and automatic-mail cap of outbound email."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    relay_url: SecretStr | None = Field(
        default=None,
        alias="OMNIHUB_SMTP_RELAY_URL",
        description="The relay outbound mail is handed to: smtp://user:pass@host:587 "
        "(STARTTLS; ?starttls=0 for a plain loopback MTA) or smtps://user:pass@host:465",
    )
    host: str | None = Field(
        default=None, alias="EMAIL_RELAY_HOST", description="Relay host (overrides the URL's)"
    )
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        alias="EMAIL_RELAY_PORT",
        description="Relay port (default: 465 for tls, 587 for starttls, 25 for none)",
    )
    user: str | None = Field(
        default=None, alias="EMAIL_RELAY_USER", description="User name for SMTP AUTH"
    )
    password: SecretStr | None = Field(
        default=None, alias="EMAIL_RELAY_PASSWORD", description="Password for SMTP AUTH"
    )
    security: Security | None = Field(
        default=None,
        alias="EMAIL_RELAY_SECURITY",
        description="starttls, tls (implicit, port 465) or none (default: the URL's, else "
        "starttls)",
    )
    ca_file: Path | None = Field(
        default=None,
        alias="EMAIL_RELAY_CA_FILE",
        description="PEM certificates trusted for the relay instead of the system's (a "
        "private relay's own CA)",
    )
    helo_name: str | None = Field(
        default=None,
        alias="EMAIL_RELAY_HELO_NAME",
        description="The name given in EHLO (default: the domain of the hub's Message-IDs)",
    )
    timeout: float = Field(
        default=30.0,
        gt=0,
        alias="EMAIL_RELAY_TIMEOUT",
        description="Seconds the relay may take to answer one SMTP command",
    )
    send_attempts: int = Field(
        default=4,
        ge=1,
        le=10,
        alias="EMAIL_SEND_ATTEMPTS",
        description="Attempts in all when the relay answers 4xx or cannot be connected to",
    )
    send_backoff: float = Field(
        default=1.0,
        gt=0,
        alias="EMAIL_SEND_BACKOFF",
        description="First retry delay, seconds; doubled after each attempt (at most 60)",
    )
    dkim_selector: str | None = Field(
        default=None,
        alias="EMAIL_DKIM_SELECTOR",
        description="DKIM selector (<selector>._domainkey.<domain> holds the public key)",
    )
    dkim_domain: str | None = Field(
        default=None, alias="EMAIL_DKIM_DOMAIN", description="The DKIM signing domain (d=)"
    )
    dkim_private_key_file: Path | None = Field(
        default=None,
        alias="EMAIL_DKIM_PRIVATE_KEY_FILE",
        description="PEM RSA private key of the selector; mail is DKIM-signed when the "
        "selector, domain and key are all set",
    )
    automatic_cap: int = Field(
        default=3,
        ge=1,
        le=1000,
        alias="EMAIL_AUTOMATIC_CAP",
        description="Automatic messages (acknowledgements) one recipient gets in 24 h, per "
        "process; more are refused with automatic_cap",
    )

    @field_validator("relay_url")
    @classmethod
    def _url_valid(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            parse_relay_url(value.get_secret_value())
        return value

    def _url(self) -> RelayURL:
        if self.relay_url is None or not self.relay_url.get_secret_value().strip():
            return RelayURL()
        return parse_relay_url(self.relay_url.get_secret_value())

    def relay(self) -> Relay | None:
        """Where to send, the URL and the separate variables combined; None without a host."""
        url = self._url()
        host = self.host or url.host
        if not host:
            return None
        security: Security = self.security or url.security or "starttls"
        password = self.password.get_secret_value() if self.password else url.password
        return Relay(
            host=host,
            port=self.port or url.port or DEFAULT_PORTS[security],
            security=security,
            user=self.user or url.user,
            password=password,
        )

    @property
    def dkim_enabled(self) -> bool:
        """Whether mail is DKIM-signed: selector, domain and key file all set."""
        return bool(self.dkim_selector and self.dkim_domain and self.dkim_private_key_file)

    def missing(self) -> list[str]:
        """The settings outbound mail cannot work without that are not set (a DKIM setup
        half done counts: mail signed by nobody would fail the domain's DMARC policy)."""
        relay = self.relay()
        missing: list[str] = []
        if relay is None:
            missing.append("OMNIHUB_SMTP_RELAY_URL or EMAIL_RELAY_HOST")
        elif relay.user and relay.password is None:
            missing.append("EMAIL_RELAY_PASSWORD")
        dkim = {
            "EMAIL_DKIM_SELECTOR": self.dkim_selector,
            "EMAIL_DKIM_DOMAIN": self.dkim_domain,
            "EMAIL_DKIM_PRIVATE_KEY_FILE": self.dkim_private_key_file,
        }
        if any(dkim.values()):
            missing.extend(name for name, value in dkim.items() if not value)
        return missing

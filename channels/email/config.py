"""Settings of the email channel's own side: the inboxes it receives for, its SMTP server,
limits, and the key that signs conversation tokens. The outbound relay, IMAP accounts and
inbound webhooks have settings classes of their own beside this one."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from channels.base.keys import checked_key, key_or_file
from schemas import Department
from schemas.identities import normalise_email

#: The key file made under OMNIHUB_DATA_DIR when EMAIL_SIGNING_KEY is not set (development).
KEY_FILE = "email-signing.key"


class Inbox:
    """One address the hub receives mail for, with the department its mail leans to."""

    __slots__ = ("address", "department")

    def __init__(self, address: str, department: Department | None) -> None:
        self.address = address
        self.department = department

    @property
    def local(self) -> str:
        """The local part, which +tags extend (``support`` of ``support@acme.example``)."""
        return self.address.partition("@")[0]

    @property
    def domain(self) -> str:
        """The domain part."""
        return self.address.partition("@")[2]


class EmailSettings(BaseSettings):
    """Inboxes, SMTP server, limits and signing key of the email channel."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    inboxes: str = Field(
        default="support@omnihub.example",
        alias="EMAIL_INBOXES",
        description="Comma-separated addresses mail is accepted for, each optionally with the "
        "department its mail goes to when no rule decides: billing@acme.example=finance",
    )
    sender_name: str | None = Field(
        default=None,
        alias="EMAIL_SENDER_NAME",
        max_length=200,
        description='Display name of the hub\'s outbound mail ("Acme Support")',
    )
    smtp_host: str = Field(
        default="127.0.0.1",
        alias="OMNIHUB_SMTP_HOST",
        description="Address the SMTP server listens on (loopback unless a relay or the "
        "internet must reach it)",
    )
    smtp_port: int = Field(
        default=2525, ge=0, le=65535, alias="OMNIHUB_SMTP_PORT", description="SMTP server port"
    )
    max_message_bytes: int = Field(
        default=26_214_400,
        ge=1024,
        alias="EMAIL_MAX_MESSAGE_BYTES",
        description="Largest message accepted (advertised with SIZE; 552 above)",
    )
    max_attachment_bytes: int = Field(
        default=15_728_640,
        ge=1024,
        alias="EMAIL_MAX_ATTACHMENT_BYTES",
        description="Largest single attachment kept; a larger one is listed without its bytes",
    )
    max_recipients: int = Field(
        default=50,
        ge=1,
        le=1000,
        alias="EMAIL_MAX_RECIPIENTS",
        description="Recipients one SMTP transaction may name (452 beyond, RFC 5321 4.5.3.1.8)",
    )
    idle_seconds: float = Field(
        default=300.0,
        gt=0,
        alias="EMAIL_SMTP_IDLE_SECONDS",
        description="An SMTP connection idle this long is closed (RFC 5321 4.5.3.2: 5 min)",
    )
    tls_cert_file: Path | None = Field(
        default=None,
        alias="EMAIL_SMTP_TLS_CERT",
        description="PEM certificate chain: the SMTP server offers STARTTLS when set",
    )
    tls_key_file: Path | None = Field(
        default=None, alias="EMAIL_SMTP_TLS_KEY", description="PEM private key of that certificate"
    )
    authserv_id: str | None = Field(
        default=None,
        alias="EMAIL_AUTHSERV_ID",
        description="Our receiving server's name in Authentication-Results; only its verdicts "
        "are trusted (default: the topmost field's)",
    )
    signing_key: SecretStr | None = Field(
        default=None,
        alias="EMAIL_SIGNING_KEY",
        description="Secret that signs the conversation in Message-IDs and reply addresses "
        "(32+ characters); unset, a key file is made under OMNIHUB_DATA_DIR",
    )
    data_dir: Path = Field(
        default=Path(".omnihub"),
        alias="OMNIHUB_DATA_DIR",
        description="Where the hub keeps its data (the development signing key)",
    )

    @field_validator("inboxes")
    @classmethod
    def _inboxes_valid(cls, value: str) -> str:
        parse_inboxes(value)
        return value

    @field_validator("signing_key")
    @classmethod
    def _signing_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """A short key would let anyone forge the conversation a message or an address names."""
        return checked_key(value, "EMAIL_SIGNING_KEY")

    @cached_property
    def inbox_list(self) -> tuple[Inbox, ...]:
        """The inboxes, in the order configured (the first sends when none is named)."""
        return parse_inboxes(self.inboxes)

    def inbox(self, address: str) -> Inbox | None:
        """The inbox ``address`` (lower-cased) names, if it is one of ours."""
        return next((i for i in self.inbox_list if i.address == address), None)

    def key(self) -> bytes:
        """The signing key: the setting, else the development key file (made on first use,
        readable by its owner only)."""
        return key_or_file(self.signing_key, self.data_dir / KEY_FILE)


def parse_inboxes(value: str) -> tuple[Inbox, ...]:
    """``a@x=finance, b@x`` to inboxes; ValueError naming what is wrong."""
    inboxes: list[Inbox] = []
    for item in (part.strip() for part in value.split(",")):
        if not item:
            continue
        address, _, department = item.partition("=")
        try:
            normalised = normalise_email(address)
        except ValueError as exc:
            raise ValueError(f"EMAIL_INBOXES: {address!r} is not an address: {exc}") from exc
        try:
            hint = Department(department.strip()) if department.strip() else None
        except ValueError:
            names = ", ".join(d.value for d in Department)
            raise ValueError(
                f"EMAIL_INBOXES: {department!r} is not a department ({names})"
            ) from None
        inboxes.append(Inbox(normalised, hint))
    if not inboxes:
        raise ValueError("EMAIL_INBOXES names no address")
    return tuple(inboxes)

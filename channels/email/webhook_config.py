"""Settings of the inbound mail webhooks (Mailgun, Postmark, SendGrid), from the environment.

A provider whose credentials are not set refuses every request (403): an unconfigured webhook
must never become an open door for forged mail.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Mail with attachments is large; providers cap theirs at 25-30 MB (Mailgun 25 MB, SendGrid
#: 30 MB, Postmark 35 MB base64 in JSON), so 30 MiB takes what they send in the common case.
DEFAULT_MAX_BYTES = 30 * 1024 * 1024


def load_ec_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The EC public key SendGrid shows for a signing policy: base64 DER (``MFkw...``) or PEM.

    ValueError when ``value`` is not an elliptic-curve public key.
    """
    text = value.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_public_key(text.encode("ascii"))
        else:
            key = load_der_public_key(base64.b64decode("".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"not a public key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (ECDSA) public key")
    return key


class InboundWebhookSettings(BaseSettings):
    """Credentials and limits of the three inbound mail webhooks."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    mailgun_signing_key: SecretStr | None = Field(
        default=None,
        alias="MAILGUN_WEBHOOK_SIGNING_KEY",
        description="Mailgun's HTTP webhook signing key: checks timestamp, token and signature",
    )
    mailgun_max_age_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        alias="MAILGUN_MAX_AGE_SECONDS",
        description="Oldest (or furthest ahead) Mailgun timestamp accepted, seconds; tokens "
        "seen within it are refused again (replay protection)",
    )
    postmark_user: str | None = Field(
        default=None,
        alias="POSTMARK_INBOUND_USER",
        description="user of the basic auth in the inbound webhook URL (https://user:pass@host/...)",
    )
    postmark_password: SecretStr | None = Field(
        default=None,
        alias="POSTMARK_INBOUND_PASSWORD",
        description="password of the basic auth in Postmark's inbound webhook URL",
    )
    sendgrid_user: str | None = Field(
        default=None,
        alias="SENDGRID_INBOUND_USER",
        description="user of the basic auth in the Inbound Parse URL (https://user:pass@host/...)",
    )
    sendgrid_password: SecretStr | None = Field(
        default=None,
        alias="SENDGRID_INBOUND_PASSWORD",
        description="password of the basic auth in SendGrid's Inbound Parse URL",
    )
    sendgrid_public_key: str | None = Field(
        default=None,
        alias="SENDGRID_INBOUND_PUBLIC_KEY",
        description="public key of the Inbound Parse security policy with signature verification "
        "(base64 DER as SendGrid returns it, or PEM): requests must then carry its ECDSA signature",
    )
    sendgrid_max_age_seconds: int = Field(
        default=300,
        ge=1,
        le=86_400,
        alias="SENDGRID_MAX_AGE_SECONDS",
        description="Oldest (or furthest ahead) signed SendGrid timestamp accepted, seconds",
    )
    max_body_bytes: int = Field(
        default=DEFAULT_MAX_BYTES,
        ge=1024,
        alias="EMAIL_WEBHOOK_MAX_BYTES",
        description="Largest inbound mail webhook body read (413 above)",
    )

    @field_validator("sendgrid_public_key")
    @classmethod
    def _public_key_loads(cls, value: str | None) -> str | None:
        """Refuse at start-up a key that could never verify anything."""
        if value is not None and value.strip():
            load_ec_public_key(value)
            return value.strip()
        return None

    def mailgun_key(self) -> str | None:
        """The Mailgun signing key in clear, or None when it is not configured."""
        key = self.mailgun_signing_key.get_secret_value() if self.mailgun_signing_key else ""
        return key or None

    def postmark_credentials(self) -> tuple[str, str] | None:
        """Postmark's basic-auth user and password, or None unless both are set."""
        return _pair(self.postmark_user, self.postmark_password)

    def sendgrid_credentials(self) -> tuple[str, str] | None:
        """SendGrid's basic-auth user and password, or None unless both are set."""
        return _pair(self.sendgrid_user, self.sendgrid_password)

    def sendgrid_key(self) -> ec.EllipticCurvePublicKey | None:
        """The Inbound Parse signature verification key, or None when it is not configured."""
        return load_ec_public_key(self.sendgrid_public_key) if self.sendgrid_public_key else None


def _pair(user: str | None, password: SecretStr | None) -> tuple[str, str] | None:
    secret = password.get_secret_value() if password else ""
    return (user, secret) if user and secret else None

"""Typed, normalised customer identities (email, E.164 phone, scoped social ids)."""

from __future__ import annotations

import re
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

#: What PostgreSQL's text and jsonb can hold: anything but NUL (U+0000). A pattern keeps the
#: check inside pydantic's core (no Python call per string), and a constrained string is
#: converted to UTF-8 there, which also refuses lone surrogates ("\ud800").
STORABLE = "^[^\\x00]*$"
#: A string every event may carry: refused with the field's location when it holds NUL.
StorableStr = Annotated[str, StringConstraints(pattern=STORABLE)]


class IdentityType(StrEnum):
    """The kinds of identifier a customer can be known by."""

    EMAIL = "email"
    PHONE = "phone"
    WEBCHAT_VISITOR = "webchat_visitor"
    USER_ID = "user_id"
    FACEBOOK = "facebook"
    INSTAGRAM = "instagram"
    WHATSAPP = "whatsapp"
    X = "x"
    TELEGRAM = "telegram"
    EXTERNAL = "external"


#: Identity types whose values only mean something inside one platform account
#: (a Messenger page-scoped id, an Instagram business account's IGSID ...).
SCOPED_TYPES = frozenset(
    {
        IdentityType.FACEBOOK,
        IdentityType.INSTAGRAM,
        IdentityType.X,
        IdentityType.TELEGRAM,
        IdentityType.EXTERNAL,
    }
)

_OPAQUE_ID = re.compile(r"^[\w.:@+\-/=]{1,256}$")


@lru_cache(maxsize=65536)
def normalise_email(value: str) -> str:
    """Return the address lowercased and checked for syntax (no DNS lookup)."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address: {exc}") from None
    return result.normalized.lower()


@lru_cache(maxsize=65536)
def normalise_phone(value: str, default_region: str | None = None) -> str:
    """Return the number in E.164; a national number needs ``default_region``."""
    raw = value.strip()
    if raw.startswith("00"):
        raw = "+" + raw[2:]
    try:
        parsed = phonenumbers.parse(raw, None if raw.startswith("+") else default_region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"invalid phone number: {exc}") from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("invalid phone number: not a possible number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


class Identity(BaseModel):
    """One identifier of a customer, normalised so equal people compare equal."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: IdentityType
    value: StorableStr
    scope: StorableStr = ""

    @field_validator("value")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("identity value must not be empty")
        if len(value) > 320:
            raise ValueError("identity value longer than 320 characters")
        return value

    @model_validator(mode="after")
    def _normalise(self, info: ValidationInfo) -> Identity:
        context: dict[str, Any] = info.context if isinstance(info.context, dict) else {}
        if self.type is IdentityType.EMAIL:
            value = normalise_email(self.value)
        elif self.type in (IdentityType.PHONE, IdentityType.WHATSAPP):
            value = normalise_phone(self.value, context.get("default_region"))
        else:
            if not _OPAQUE_ID.match(self.value):
                raise ValueError(f"{self.type.value} id has characters outside [A-Za-z0-9_.:@+-/=]")
            value = self.value
        if self.type in SCOPED_TYPES and not self.scope:
            raise ValueError(
                f"{self.type.value} ids need a scope (the platform account they belong to)"
            )
        if value != self.value:
            object.__setattr__(self, "value", value)
        return self

    @property
    def key(self) -> str:
        """Stable text form ``type:scope:value`` used for lookups and partition keys."""
        return f"{self.type.value}:{self.scope}:{self.value}"

    @classmethod
    def parse(cls, text: str) -> Identity:
        """Build an identity from ``type:value`` or ``type:scope:value`` text."""
        kind, _, rest = text.partition(":")
        if not rest:
            raise ValueError("identity must look like type:value or type:scope:value")
        scope, sep, value = rest.partition(":")
        is_scoped = kind in {t.value for t in SCOPED_TYPES}
        if sep and is_scoped:
            return cls(type=IdentityType(kind), scope=scope, value=value)
        return cls(type=IdentityType(kind), value=rest)

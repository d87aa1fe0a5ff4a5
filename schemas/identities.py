"""Typed, normalised customer identities (email, E.164 phone, scoped social ids)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any, TypeVar

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

#: What PostgreSQL's text and jsonb can hold: anything but NUL (U+0000). A pattern keeps the
#: check inside pydantic's core (no Python call per string), and a constrained string is
#: converted to UTF-8 there, which also refuses lone surrogates ("\ud800").
STORABLE = "^[^\\x00]*$"
#: A string every event may carry: refused with the field's location when it holds NUL.
StorableStr = Annotated[str, StringConstraints(pattern=STORABLE)]


@dataclass(frozen=True)
class _StorableKeys:
    """The JSON Schema of a dict keyed by StorableStr: pydantic says ``patternProperties``
    (values of keys without NUL), which leaves a key with NUL free; this says that every key
    is storable (``propertyNames``) and every value is of the declared type."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        patterns = schema.pop("patternProperties", None)
        if patterns:
            (values,) = patterns.values()
            schema["propertyNames"] = {"pattern": STORABLE}
            schema["additionalProperties"] = values
        return schema


_V = TypeVar("_V")
#: A dict every event may carry: its keys are ``StorableStr`` (refused with the key's location
#: when one holds NUL) and its values ``_V``, e.g. ``StorableDict[Scalar]``.
StorableDict = Annotated[dict[StorableStr, _V], _StorableKeys()]


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
    #: Not empty once stripped, at most 320 characters then (checked below; JSON Schema can
    #: say only that it is not empty), and valid for its type (normalised below).
    value: StorableStr = Field(min_length=1)
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

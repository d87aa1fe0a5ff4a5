"""Identity protection rules: blocked values, limits per type, shared values, merge cap."""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas import Identity, IdentityType

Survivorship = Literal["most_recent", "oldest", "non_empty"]

PROFILE_FIELDS = ("name", "birth_date", "language", "preferred_channel", "addresses", "attributes")


class IdentityRules(BaseModel):
    """How identities may join customers; load from YAML with :func:`load_rules`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blocked: dict[IdentityType, list[str]] = Field(
        default_factory=lambda: {
            IdentityType.EMAIL: [
                r"re:^(no-?reply|do-?not-?reply|mailer-daemon|postmaster|bounces?)@",
                r"re:^(info|contact|hello|office|admin|sales|support|team)@",
            ],
            IdentityType.PHONE: [
                "+15005550006",  # Twilio's magic test number
                r"re:^\+1\d{3}5550[01]\d\d$",  # the fictional 555-0100..0199 range
            ],
        },
        description="values that never decide who a customer is: exact, or 're:<regex>'",
    )
    limits: dict[IdentityType, int] = Field(
        default_factory=lambda: {
            IdentityType.USER_ID: 1,
            IdentityType.EMAIL: 10,
            IdentityType.PHONE: 10,
        },
        description="at most this many identities of a type per customer",
    )
    shared_after: int = Field(
        default=3, ge=2, description="a value seen with this many customers is shared"
    )
    merge_cap: int = Field(default=10, ge=1, description="merges per customer before review")
    survivorship: dict[str, Survivorship] = Field(
        default_factory=lambda: {  # type: ignore[arg-type]
            "name": "non_empty",
            "birth_date": "oldest",
            "language": "most_recent",
            "preferred_channel": "most_recent",
            "addresses": "most_recent",
            "attributes": "most_recent",
        }
    )

    @field_validator("blocked")
    @classmethod
    def _patterns_compile(
        cls, value: dict[IdentityType, list[str]]
    ) -> dict[IdentityType, list[str]]:
        for patterns in value.values():
            for pattern in patterns:
                if pattern.startswith("re:"):
                    try:
                        re.compile(pattern[3:])
                    except re.error as exc:
                        raise ValueError(f"bad regex {pattern!r}: {exc}") from None
        return value

    @field_validator("survivorship")
    @classmethod
    def _known_fields(cls, value: dict[str, Survivorship]) -> dict[str, Survivorship]:
        unknown = set(value) - set(PROFILE_FIELDS)
        if unknown:
            raise ValueError(f"unknown profile fields {sorted(unknown)}; known: {PROFILE_FIELDS}")
        return value

    @cached_property
    def _compiled(self) -> dict[IdentityType, tuple[frozenset[str], list[re.Pattern[str]]]]:
        compiled = {}
        for kind, patterns in self.blocked.items():
            exact = frozenset(p for p in patterns if not p.startswith("re:"))
            regexes = [re.compile(p[3:], re.IGNORECASE) for p in patterns if p.startswith("re:")]
            compiled[kind] = (exact, regexes)
        return compiled

    def blocked_rule(self, identity: Identity) -> str | None:
        """The pattern that blocks ``identity``, or None when it may decide."""
        exact, regexes = self._compiled.get(identity.type, (frozenset(), []))
        if identity.value in exact:
            return identity.value
        for regex in regexes:
            if regex.search(identity.value):
                return f"re:{regex.pattern}"
        return None

    def limit(self, kind: IdentityType | str) -> int | None:
        """The most identities of ``kind`` one customer may have, or None."""
        return self.limits.get(IdentityType(kind))

    def rule_for(self, field: str) -> Survivorship:
        """The survivorship rule of a profile field."""
        return self.survivorship.get(field, "most_recent")


def load_rules(path: str | Path | None) -> IdentityRules:
    """Read rules from a YAML file (OMNIHUB_IDENTITY_RULES), or the defaults when None."""
    if not path:
        return IdentityRules()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return IdentityRules.model_validate(data)

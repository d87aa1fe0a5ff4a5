"""The ruleset model: ordered rules (condition -> action), languages, classifier, fallback."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from schemas import Department, Purpose
from services.routing.conditions import Condition

PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class Action:
    """What a matching rule does."""

    department: Department | None
    priority: str = "normal"
    tags: tuple[str, ...] = ()
    copies: tuple[Department, ...] = ()
    #: Consent the message withdraws (an opt-out): set off on every channel.
    withdraw_consent: tuple[Purpose, ...] = ()
    #: Not routed at all (no record, no decision): e.g. the hub's own outbound messages.
    ignore: bool = False


@dataclass(frozen=True)
class Rule:
    """One rule; the first rule whose condition holds decides the primary department."""

    id: str
    when: Condition
    then: Action
    description: str = ""
    line: int = 0


@dataclass(frozen=True)
class ClassifierConfig:
    """The fallback classifier: trained at load time from labelled examples."""

    examples: Path
    threshold: float


@dataclass(frozen=True)
class Ruleset:
    """A validated ruleset; ``version`` is what routed records carry."""

    name: str
    declared_version: str
    digest: str
    languages: tuple[str, ...]
    min_language_confidence: float
    rules: tuple[Rule, ...]
    fallback: Department = Department.TRIAGE
    fallback_tags: tuple[str, ...] = ()
    classifier: ClassifierConfig | None = None
    source: str = ""
    field_paths: frozenset[str] = field(default=frozenset())
    language_accuracy: str = "low"
    #: CLD2 decides the texts it is sure of before lingua (see ``language.Detector``).
    language_cld2: bool = True

    @property
    def version(self) -> str:
        """``name/declared+sha256-prefix``: changes whenever the file's bytes change."""
        return f"{self.name}/{self.declared_version}+{self.digest[:12]}"

    @property
    def needs_customer(self) -> bool:
        """Whether rules read ``customer.*`` fields (loaded from PostgreSQL only then)."""
        return any(p.startswith("customer.") for p in self.field_paths)

"""The routing engine: the first matching rule sets the primary department, its copies go to
other departments; where no rule matches, the classifier decides if it is sure enough, else
the fallback (triage). Pure: consent and profile are passed in, nothing is read or written."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas import Department, Direction, Interaction, Purpose, Routing
from services.routing import language as lang
from services.routing.classifier import Classifier, read_examples
from services.routing.conditions import Context
from services.routing.loader import load
from services.routing.model import Rule, Ruleset
from services.routing.text import Words, words

#: Attributes channels set that routing obeys: mail a machine sent, and the department the
#: address it was sent to stands for (used when no rule matches, before the classifier).
AUTOMATIC = "automatic"
DEPARTMENT_HINT = "department_hint"

#: The message's text fields, as conditions name them.
FIELDS = ("subject", "text")

#: Language detection reads a message's first this many characters (subject, then text):
#: plenty to tell its language, while lingua's CPU (holding the GIL) grows with the length
#: (docs/design-notes.md#servicesroutingenginepy).
DETECT_CHARS = 2000

#: How many decisions of matched rules ``Router`` keeps to hand out again.
DECISIONS_KEPT = 4096

#: Languages detected for a batch ahead of routing it: message content -> what was found.
Languages = Mapping[str, "lang.Detected | None"]


@dataclass(frozen=True)
class Message:
    """What the rules look at, from an interaction or from a labelled example."""

    channel: str
    direction: str = "inbound"
    kind: str = "message"
    subject: str | None = None
    text: str | None = None
    language: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, interaction: Interaction) -> Message:
        """The message of an interaction (its declared language, if any, is trusted)."""
        return cls(
            channel=interaction.channel.value,
            direction=interaction.direction.value,
            kind=interaction.kind.value,
            subject=interaction.subject,
            text=interaction.text,
            language=interaction.language,
            attributes=interaction.attributes,
        )


@dataclass(frozen=True)
class Decision:
    """Where a message goes and why; ``primary`` is None when a rule says to ignore it."""

    primary: Routing | None
    copies: tuple[Routing, ...] = ()
    language: str | None = None
    withdraw_consent: tuple[Purpose, ...] = ()

    @property
    def routings(self) -> tuple[Routing, ...]:
        """The primary routing and its copies (nothing when ignored)."""
        return () if self.primary is None else (self.primary, *self.copies)


class Router:
    """A loaded ruleset with its language detector and classifier, ready to route."""

    def __init__(
        self, ruleset: Ruleset, folder: Path | None = None, background: bool = False
    ) -> None:
        self.ruleset = ruleset
        self.detector = lang.Detector(
            ruleset.languages,
            ruleset.min_language_confidence,
            ruleset.language_accuracy,
            cld2=ruleset.language_cld2,
        )
        #: Each rule with the tokens one of which a message must hold for it to match.
        self._screened = tuple((rule, rule.when.needs()) for rule in ruleset.rules)
        #: Decisions of matched rules by what they are made of (see ``_decide``).
        self._decided: dict[tuple[Any, ...], Decision] = {}
        self.classifier: Classifier | None = None
        if ruleset.classifier is not None:
            path = ruleset.classifier.examples
            if not path.is_absolute() and folder is not None:
                path = folder / path
            self.classifier = Classifier(read_examples(path), background=background)

    @classmethod
    def load(cls, path: str | Path | None = None, background: bool = False) -> Router:
        """Load and validate a ruleset file (default: the shipped one) and build its router;
        ``background`` trains the classifier in a thread (see Classifier)."""
        ruleset, folder = load(path)
        return cls(ruleset, folder, background)

    @property
    def version(self) -> str:
        """The ruleset version routed records carry."""
        return self.ruleset.version

    @staticmethod
    def _content(message: Message) -> str:
        """What language detection reads: subject and text, cut at ``DETECT_CHARS``."""
        return " ".join(p for p in (message.subject, message.text) if p)[:DETECT_CHARS]

    def detect(self, messages: Iterable[Message]) -> dict[str, lang.Detected | None]:
        """The languages of a batch of messages, detected at once (see Detector.detect_many),
        for ``route``'s ``detected``; messages that declare theirs are skipped."""
        return self.detector.detect_many(
            self._content(m) for m in messages if not lang.normalise(m.language)
        )

    def language_of(
        self, message: Message, detected: Languages | None = None
    ) -> tuple[str | None, str]:
        """The message's language (declared, else detected) and how it was found."""
        declared = lang.normalise(message.language)
        if declared:
            return declared, "declared"
        content = self._content(message)
        found = self.detector.detect(content, detected)
        if found is None:
            return None, "unknown"
        return found.language, f"detected {found.confidence:.2f}"

    def context(
        self,
        message: Message,
        language: str | None,
        customer: Mapping[str, Any],
        withdrawn: frozenset[str],
    ) -> Context:
        """The condition context of one message."""
        values: dict[str, Any] = {f"attributes.{k}": v for k, v in message.attributes.items()}
        values.update({f"customer.{k}": v for k, v in customer.items()})
        stem_languages = (
            (language,) if language in self.ruleset.languages else self.ruleset.languages
        )
        return Context(
            channel=message.channel,
            direction=message.direction,
            kind=message.kind,
            language=language,
            stem_languages=stem_languages,
            fields={"subject": Words(_words(message.subject)), "text": Words(_words(message.text))},
            values=values,
            withdrawn=withdrawn,
        )

    def route(
        self,
        message: Message,
        customer: Mapping[str, Any] | None = None,
        withdrawn: frozenset[str] = frozenset(),
        detected: Languages | None = None,
    ) -> Decision:
        """Decide where ``message`` goes (its language from ``detected``, a ``detect`` result,
        when given).

        ``withdrawn`` holds the purposes ("marketing") the customer withdrew consent for.
        Marketing then never gets the message: a rule routing to marketing is passed over for
        the next matching rule, marketing copies are dropped, and a classifier answer of
        marketing goes to the fallback instead. The one exception is the opt-out itself: a
        rule that withdraws marketing consent still routes to marketing, which must process
        the unsubscribe (so a replayed or repeated "STOP" is routed the same way).
        """
        if message.direction == Direction.OUTBOUND.value or message.attributes.get(AUTOMATIC):
            # the system's invariants, not configuration: what the hub itself sent, and mail
            # a machine sent (an out-of-office, a list), is never a department's work,
            # whatever a ruleset says; answering machines would answer each other forever
            return Decision(primary=None, language=None)
        language, how = self.language_of(message, detected)
        ctx = self.context(message, language, customer or {}, withdrawn)
        blocked = Purpose.MARKETING.value in withdrawn
        notes: list[str] = []
        withdraw: tuple[Purpose, ...] = ()
        first = True
        tokens = ctx.tokens(FIELDS)
        for rule, needs in self._screened:
            if needs is not None and needs.isdisjoint(tokens):
                continue  # none of the words it looks for is in the message: one set test
            found = rule.when.test(ctx)
            if found is None:
                continue
            if first:
                withdraw, first = rule.then.withdraw_consent, False
            if rule.then.ignore:
                return Decision(primary=None, language=language, withdraw_consent=withdraw)
            opt_out = Purpose.MARKETING in rule.then.withdraw_consent
            if blocked and rule.then.department is Department.MARKETING and not opt_out:
                notes.append(f"rule {rule.id} skipped: marketing consent withdrawn")
                continue
            return self._decide(rule, found, notes, language, withdraw, blocked)
        return self._fallback(message, notes, language, how, withdraw, blocked)

    def _decide(
        self,
        rule: Rule,
        found: list[str],
        notes: list[str],
        language: str | None,
        withdraw: tuple[Purpose, ...],
        blocked: bool,
    ) -> Decision:
        """The decision of a matched rule, made once for each set of what it is made of (the
        same rule, matched words, notes and language recur from message to message; the
        models are frozen, so messages share them); at most ``DECISIONS_KEPT`` are kept."""
        key = (rule.id, tuple(found), tuple(notes), language, withdraw, blocked)
        kept = self._decided.get(key)
        if kept is not None:
            return kept
        if len(self._decided) >= DECISIONS_KEPT:
            self._decided.clear()
        action = rule.then
        assert action.department is not None
        reasons = [*notes, f"rule {rule.id} (line {rule.line})" + (": " if found else "")]
        reasons[-1] += ", ".join(found)
        copies = [d for d in action.copies if not (blocked and d is Department.MARKETING)]
        if len(copies) < len(action.copies):
            reasons.append("marketing copy dropped: consent withdrawn")
        primary = Routing(
            department=action.department,
            priority=action.priority,
            tags=list(action.tags),
            rule_id=rule.id,
            ruleset_version=self.version,
            reason="; ".join(reasons),
            language=language,
        )
        decision = self._decided[key] = Decision(
            primary=primary,
            copies=tuple(
                primary.model_copy(update={"department": d, "copy_of": action.department})
                for d in copies
            ),
            language=language,
            withdraw_consent=withdraw,
        )
        return decision

    def _fallback(
        self,
        message: Message,
        notes: list[str],
        language: str | None,
        how: str,
        withdraw: tuple[Purpose, ...],
        blocked: bool,
    ) -> Decision:
        ruleset = self.ruleset
        department, rule_id, confidence = ruleset.fallback, "fallback", None
        reasons = [*notes, "no rule matched"]
        hint = _hint(message)
        if hint is not None and not (blocked and hint is Department.MARKETING):
            department, rule_id = hint, "channel-hint"
            reasons.append(f"the channel's hint: {hint.value} (the address it was sent to)")
        elif self.classifier is not None and ruleset.classifier is not None:
            guess = self.classifier.predict(message.subject, message.text)
            if guess is not None:
                confidence = round(guess.confidence, 4)
                said = f"classifier: {guess.department.value} at {guess.confidence:.2f}"
                if guess.confidence < ruleset.classifier.threshold:
                    reasons.append(f"{said} < threshold {ruleset.classifier.threshold:.2f}")
                elif blocked and guess.department is Department.MARKETING:
                    reasons.append(f"{said}, but marketing consent withdrawn")
                else:
                    department, rule_id = guess.department, "classifier"
                    reasons.append(said)
        reasons.append(f"language {language or 'unknown'} ({how})")
        return Decision(
            primary=Routing(
                department=department,
                tags=list(ruleset.fallback_tags) if rule_id == "fallback" else [rule_id],
                rule_id=rule_id,
                ruleset_version=self.version,
                reason="; ".join(reasons),
                confidence=confidence,
                language=language,
            ),
            language=language,
            withdraw_consent=withdraw,
        )


def _hint(message: Message) -> Department | None:
    """The department the channel says the message was addressed to (an inbox's)."""
    value = message.attributes.get(DEPARTMENT_HINT)
    try:
        return Department(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _words(text: str | None) -> list[str]:
    return words(text) if text else []

"""Evaluate a ruleset on labelled examples: precision and recall per department, accuracy,
confusion matrix (scikit-learn's metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from schemas import Department
from services.routing.classifier import Example
from services.routing.engine import Message, Router

LABELS = [d.value for d in Department]


@dataclass
class Outcome:
    """What the router did with one example."""

    example: Example
    department: str
    rule_id: str
    language: str | None
    reason: str


@dataclass
class Report:
    """The evaluation of one ruleset on one example set."""

    ruleset_version: str
    outcomes: list[Outcome]
    per_department: dict[str, dict[str, float | int]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)

    @property
    def n(self) -> int:
        """How many examples."""
        return len(self.outcomes)

    @property
    def correct(self) -> int:
        """How many went to their labelled department."""
        return sum(o.department == o.example.label.value for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        """Share of examples routed to their labelled primary department."""
        return self.correct / self.n if self.n else 0.0

    def by_language(self) -> dict[str, dict[str, float | int]]:
        """Accuracy per labelled language, and how often detection agreed with the label."""
        result: dict[str, dict[str, float | int]] = {}
        for code in sorted({o.example.lang or "?" for o in self.outcomes}):
            rows = [o for o in self.outcomes if (o.example.lang or "?") == code]
            result[code] = {
                "n": len(rows),
                "accuracy": sum(o.department == o.example.label.value for o in rows) / len(rows),
                "detected": sum(o.language == o.example.lang for o in rows) / len(rows),
            }
        return result

    def mistakes(self) -> list[Outcome]:
        """The examples routed elsewhere than their label."""
        return [o for o in self.outcomes if o.department != o.example.label.value]

    def as_json(self) -> dict[str, Any]:
        """The machine-readable summary (`omnihub rules eval --json`)."""
        return {
            "n": self.n,
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "ruleset_version": self.ruleset_version,
            "labels": LABELS,
            "per_department": self.per_department,
            "confusion": {"rows": "expected", "columns": "routed", "matrix": self.confusion},
            "by_language": self.by_language(),
            "mistakes": [
                {
                    "text": o.example.text,
                    "expected": o.example.label.value,
                    "routed": o.department,
                    "rule_id": o.rule_id,
                    "reason": o.reason,
                }
                for o in self.mistakes()
            ],
        }


def message_of(example: Example) -> Message:
    """An inbound message as a channel would deliver it: no declared language (detected)."""
    return Message(
        channel=example.channel,
        kind=example.kind,
        subject=example.subject,
        text=example.text,
    )


def evaluate(router: Router, examples: Sequence[Example]) -> Report:
    """Route every example (consent granted, no profile) and score the primary department."""
    outcomes = []
    for example in examples:
        decision = router.route(message_of(example))
        primary = decision.primary
        outcomes.append(
            Outcome(
                example=example,
                department=primary.department.value if primary else "ignored",
                rule_id=primary.rule_id if primary else "ignored",
                language=decision.language,
                reason=primary.reason if primary else "",
            )
        )
    report = Report(router.version, outcomes)
    if not outcomes:
        return report
    expected = [o.example.label.value for o in outcomes]
    routed = [o.department for o in outcomes]
    precision, recall, _, support = precision_recall_fscore_support(
        expected, routed, labels=LABELS, zero_division=0
    )
    report.per_department = {
        label: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "support": int(support[i]),
            "routed": routed.count(label),
        }
        for i, label in enumerate(LABELS)
    }
    report.confusion = confusion_matrix(expected, routed, labels=LABELS).tolist()
    return report

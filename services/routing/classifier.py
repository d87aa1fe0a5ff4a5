"""The fallback classifier: scikit-learn, trained at load time from labelled JSONL examples
shipped with the ruleset (nothing downloaded). It decides only where no rule matched."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas import Department
from services.routing.text import fold


@dataclass(frozen=True)
class Example:
    """One labelled message (a line of an eval or training JSONL file)."""

    text: str
    label: Department
    subject: str | None = None
    channel: str = "api"
    kind: str = "message"
    lang: str | None = None

    @property
    def content(self) -> str:
        """Subject and text, as the classifier sees them."""
        return f"{self.subject or ''}\n{self.text}".strip()


def read_examples(path: Path) -> list[Example]:
    """Read labelled examples; ValueError naming the line when one is malformed."""
    examples = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                examples.append(
                    Example(
                        text=str(row["text"]),
                        label=Department(row["label"]),
                        subject=row.get("subject"),
                        channel=row.get("channel", "api"),
                        kind=row.get("kind", "message"),
                        lang=row.get("lang"),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: not a labelled example: {exc}") from None
    return examples


@dataclass(frozen=True)
class Prediction:
    """The most likely department and the classifier's probability for it."""

    department: Department
    confidence: float


class Classifier:
    """TF-IDF over accent-folded character n-grams and words, logistic regression.

    ``background=True`` trains in a thread, so scikit-learn's import and the fit overlap a
    worker's wait for the consumer group; ``predict`` waits for the model if it is asked before
    the training ends (docs/design-notes.md#servicesroutingclassifierpy).
    """

    def __init__(self, examples: Iterable[Example], background: bool = False) -> None:
        rows = list(examples)
        if len({e.label for e in rows}) < 2:
            raise ValueError("the classifier needs examples of at least two departments")
        self.size = len(rows)
        self._model: Future[Any] = Future()
        if background:
            threading.Thread(
                target=self._train, args=(rows,), name="classifier-training", daemon=True
            ).start()
        else:
            self._train(rows)
            self._model.result()  # a failed fit raises here, at load

    def _train(self, rows: Sequence[Example]) -> None:
        try:
            self._model.set_result(_fit(rows))
        except BaseException as exc:  # handed to whoever asks for the model
            self._model.set_exception(exc)

    def predict(self, subject: str | None, text: str | None) -> Prediction | None:
        """The department for a message, or None when it has no text at all."""
        content = f"{subject or ''}\n{text or ''}".strip()
        if not content:
            return None
        model = self._model.result()
        probabilities = model.predict_proba([content])[0]
        best = int(probabilities.argmax())
        label = model.classes_[best]
        return Prediction(Department(str(label)), float(probabilities[best]))


def _fit(rows: Sequence[Example]) -> Any:
    """The trained scikit-learn pipeline (imported here: it is the slowest import we have)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_union

    model = Pipeline(
        [
            (
                "features",
                make_union(
                    TfidfVectorizer(
                        preprocessor=fold,
                        analyzer="char_wb",
                        ngram_range=(2, 5),
                        sublinear_tf=True,
                    ),
                    TfidfVectorizer(preprocessor=fold, sublinear_tf=True),
                ),
            ),
            ("model", LogisticRegression(C=20.0, max_iter=2000)),
        ]
    )
    model.fit([e.content for e in rows], [e.label.value for e in rows])
    return model

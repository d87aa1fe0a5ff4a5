"""Language detection with lingua (its models ship inside the PyPI wheel: nothing is
downloaded at run time)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder


@dataclass(frozen=True)
class Detected:
    """The most likely language and how sure lingua is (0..1)."""

    language: str
    confidence: float


def normalise(tag: str | None) -> str | None:
    """The primary subtag of a language tag, lower-case ("pt-BR" -> "pt")."""
    if not tag:
        return None
    return tag.replace("_", "-").split("-", 1)[0].strip().lower() or None


def _language(code: str) -> Language:
    try:
        return Language.from_iso_code_639_1(getattr(IsoCode639_1, code.upper()))
    except AttributeError:
        raise ValueError(f"unknown language code {code!r}") from None


def check(code: str) -> None:
    """Raise ValueError unless lingua knows the ISO 639-1 ``code``."""
    _language(code)


ACCURACIES = ("low", "high")
"""lingua's modes: ``low`` uses trigrams only (~45 us a message, models loaded lazily, ~100 MB
less memory); ``high`` uses 1- to 5-grams (~125 us, better on texts under ~120 characters)."""


@lru_cache(maxsize=4)
def _detector(codes: tuple[str, ...], accuracy: str) -> LanguageDetector:
    languages = [_language(code) for code in codes]
    builder = LanguageDetectorBuilder.from_languages(*languages)
    if accuracy == "low":
        return builder.with_low_accuracy_mode().build()
    return builder.with_preloaded_language_models().build()


class Detector:
    """Detects among the given languages; below ``min_confidence`` the language is unknown."""

    def __init__(self, codes: Iterable[str], min_confidence: float, accuracy: str = "low") -> None:
        if accuracy not in ACCURACIES:
            raise ValueError(f"accuracy must be one of {ACCURACIES}, not {accuracy!r}")
        self.codes = tuple(sorted(set(codes)))
        self.min_confidence = min_confidence
        self._lingua = _detector(self.codes, accuracy) if len(self.codes) > 1 else None

    def detect_many(self, texts: Iterable[str]) -> dict[str, Detected | None]:
        """Detect a batch's texts at once (lingua spreads them over every core, holding the
        GIL); ``detect`` answers from the result when given it as ``known``."""
        if self._lingua is None:
            return {}
        todo = list(dict.fromkeys(t for t in texts if t.strip()))
        if len(todo) < 2:
            return {}
        found = self._lingua.compute_language_confidence_values_in_parallel(todo)
        return {text: self._best(values) for text, values in zip(todo, found, strict=True)}

    def detect(
        self, text: str, known: Mapping[str, Detected | None] | None = None
    ) -> Detected | None:
        """The language of ``text``, or None when it is too short or too ambiguous to say;
        from ``known`` (a ``detect_many`` result) when it holds it."""
        if known and text in known:
            return known[text]
        if not text.strip():
            return None
        if self._lingua is None:
            return Detected(self.codes[0], 1.0) if self.codes else None
        return self._best(self._lingua.compute_language_confidence_values(text))

    def _best(self, values: list[Any]) -> Detected | None:
        if not values:
            return None
        best = values[0]
        if best.value < self.min_confidence:
            return None
        return Detected(best.language.iso_code_639_1.name.lower(), float(best.value))

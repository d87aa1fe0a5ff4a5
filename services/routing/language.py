"""Language detection: CLD2 decides what it is sure of, lingua the rest (both ship their
models inside their PyPI wheels: nothing is downloaded at run time).

CLD2 (pycld2) is far cheaper than lingua, which holds the GIL, but less sure on short or mixed
texts and knows languages the ruleset does not route, so it decides only when it says its answer
is reliable, reaches ``CLD2_SHARE`` and ``CLD2_SCORE`` and the language is the ruleset's;
lingua, restricted to the ruleset's languages, decides the rest
(docs/design-notes.md#servicesroutinglanguagepy).
``language_detection.cld2: false`` in a ruleset leaves every text to lingua.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import pycld2
from lingua import IsoCode639_1, Language, LanguageDetector, LanguageDetectorBuilder

#: The share of a text (percent) CLD2 must put in one language to decide it without lingua.
CLD2_SHARE = 90
#: ... and the least score (CLD2's evidence for it, normalised by the text's length) it must
#: give that language: below it, CLD2 called short French sentences English
#: (docs/design-notes.md#servicesroutinglanguagepy).
CLD2_SCORE = 600


@dataclass(frozen=True)
class Detected:
    """The most likely language and how sure the detector is (0..1): lingua's confidence, or
    the share of the text CLD2 found in that language when CLD2 decided."""

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
"""lingua's modes: ``low`` uses trigrams only (faster, models loaded lazily, less memory);
``high`` uses 1- to 5-grams, better on short texts
(docs/design-notes.md#servicesroutinglanguagepy)."""


@lru_cache(maxsize=4)
def _detector(codes: tuple[str, ...], accuracy: str) -> LanguageDetector:
    languages = [_language(code) for code in codes]
    builder = LanguageDetectorBuilder.from_languages(*languages)
    if accuracy == "low":
        return builder.with_low_accuracy_mode().build()
    return builder.with_preloaded_language_models().build()


class Detector:
    """Detects among the given languages; below ``min_confidence`` the language is unknown.
    With ``cld2``, CLD2 decides the texts it is sure of first (see this module)."""

    def __init__(
        self,
        codes: Iterable[str],
        min_confidence: float,
        accuracy: str = "low",
        cld2: bool = True,
    ) -> None:
        if accuracy not in ACCURACIES:
            raise ValueError(f"accuracy must be one of {ACCURACIES}, not {accuracy!r}")
        self.codes = tuple(sorted(set(codes)))
        self.min_confidence = min_confidence
        self._lingua = _detector(self.codes, accuracy) if len(self.codes) > 1 else None
        self._cld2 = cld2

    def detect_many(self, texts: Iterable[str]) -> dict[str, Detected | None]:
        """Detect a batch's texts at once (lingua spreads what CLD2 left over every core,
        holding the GIL); ``detect`` answers from the result when given it as ``known``."""
        if self._lingua is None:
            return {}
        todo = list(dict.fromkeys(t for t in texts if t.strip()))
        found: dict[str, Detected | None] = {}
        if self._cld2:
            for text in todo:
                if (sure := self._cld2_sure(text)) is not None:
                    found[text] = sure
            todo = [t for t in todo if t not in found]
        if len(todo) == 1:
            found[todo[0]] = self._best(self._lingua.compute_language_confidence_values(todo[0]))
        elif todo:
            values = self._lingua.compute_language_confidence_values_in_parallel(todo)
            found.update((t, self._best(v)) for t, v in zip(todo, values, strict=True))
        return found

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
        if self._cld2 and (sure := self._cld2_sure(text)) is not None:
            return sure
        return self._best(self._lingua.compute_language_confidence_values(text))

    def _cld2_sure(self, text: str) -> Detected | None:
        """CLD2's answer when it says it is reliable, it reaches ``CLD2_SHARE`` and
        ``CLD2_SCORE`` and it is one of ours; else None (lingua decides)."""
        try:
            reliable, _, found = pycld2.detect(text)
        except pycld2.error:  # text CLD2 cannot take (e.g. unpaired surrogates): lingua's
            return None
        _, code, share, score = found[0]
        if reliable and share >= CLD2_SHARE and score >= CLD2_SCORE and code in self.codes:
            return Detected(code, share / 100)
        return None

    def _best(self, values: list[Any]) -> Detected | None:
        if not values:
            return None
        best = values[0]
        if best.value < self.min_confidence:
            return None
        return Detected(best.language.iso_code_639_1.name.lower(), float(best.value))

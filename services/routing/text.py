"""Text normalisation and keyword/phrase matching: case- and accent-insensitive, word-bounded,
inflection-aware through Snowball stemmers (one per language, offline; in C through PyStemmer)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, KeysView, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import snowballstemmer

#: ISO 639-1 code -> Snowball algorithm name, for the languages a ruleset may declare.
STEMMERS = {
    "ar": "arabic",
    "ca": "catalan",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "fi": "finnish",
    "fr": "french",
    "hu": "hungarian",
    "id": "indonesian",
    "it": "italian",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sv": "swedish",
    "tr": "turkish",
}

_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """Lower-case and strip accents (é -> e, Cyrillic yo -> ye); keeps the script."""
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The words of ``text`` (Unicode word characters); punctuation and apostrophes split."""
    return _WORD.findall(unicodedata.normalize("NFC", text))


@cache
def _stemmer(language: str) -> Any:
    return snowballstemmer.stemmer(STEMMERS[language])


def stem(word: str, language: str) -> str:
    """The accent-folded Snowball stem of one word ("Rechnungen" -> "rechnung")."""
    if word.isdigit():  # numbers (order ids, amounts) are their own stem; not worth caching
        return word
    return _stem(word, language)


@lru_cache(maxsize=65536)
def _stem(word: str, language: str) -> str:
    lowered = word.casefold().replace("\u0451", "\u0435")  # yo -> ye
    return fold(_stemmer(language).stemWord(lowered))


@dataclass(frozen=True)
class Keyword:
    """A keyword or phrase of a rule, prepared for every language of the ruleset.

    A word ending in ``*`` matches any word starting with it ("rechnung*" matches
    "Rechnungsadresse"); other words match when equal once folded, or when their stems are
    equal in the message's language.
    """

    source: str
    folded: tuple[str, ...]
    prefix: tuple[bool, ...]
    stems: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, source: str, languages: Iterable[str]) -> Keyword:
        """Prepare ``source``; ValueError if it has no word in it."""
        raw = [(w, False) for w in words(source)]
        if source.rstrip().endswith("*") and raw:
            raw[-1] = (raw[-1][0], True)
        if not raw:
            raise ValueError(f"keyword {source!r} has no word in it")
        folded = tuple(fold(w) for w, _ in raw)
        stems = {lang: tuple(stem(w, lang) for w, _ in raw) for lang in languages}
        return cls(source, folded, tuple(p for _, p in raw), stems)


@dataclass
class Words:
    """The words of one field of a message, indexed by folded form and, on demand, by stem."""

    original: list[str]
    folded: list[str] = field(init=False)
    _at: dict[str, list[int]] = field(default_factory=dict, init=False)
    _stems: dict[str, list[str]] = field(default_factory=dict, init=False)
    _stem_at: dict[str, dict[str, list[int]]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.folded = [fold(w) for w in self.original]
        for position, word in enumerate(self.folded):
            self._at.setdefault(word, []).append(position)

    @property
    def folded_set(self) -> KeysView[str]:
        """The distinct folded words (a set-like view)."""
        return self._at.keys()

    def stem_set(self, language: str) -> KeysView[str]:
        """The distinct stems in ``language`` (a set-like view)."""
        return self._stem_index(language).keys()

    def stems(self, language: str) -> list[str]:
        """Stems of every word in ``language``, cached."""
        if language not in self._stems:
            self._stems[language] = [stem(w, language) for w in self.original]
        return self._stems[language]

    def has_any(
        self, folded: frozenset[str], stems: dict[str, frozenset[str]], languages: Sequence[str]
    ) -> bool:
        """Whether any of these folded words, or stems in ``languages``, occurs at all."""
        if not folded.isdisjoint(self._at):
            return True
        for language in languages:
            wanted = stems.get(language)
            if wanted and not wanted.isdisjoint(self.stems(language)):
                return True
        return False

    def positions(self, word: str) -> list[int]:
        """Where a folded word occurs."""
        return self._at.get(word, [])

    def stem_positions(self, language: str, wanted: str) -> list[int]:
        """Where a stem occurs, in ``language``."""
        return self._stem_index(language).get(wanted, [])

    def _stem_index(self, language: str) -> dict[str, list[int]]:
        if language not in self._stem_at:
            index: dict[str, list[int]] = {}
            for position, value in enumerate(self.stems(language)):
                index.setdefault(value, []).append(position)
            self._stem_at[language] = index
        return self._stem_at[language]


def _starts(keyword: Keyword, text: Words, language: str | None) -> Iterable[int]:
    """Candidate start positions of ``keyword``: from the index unless its first word is a
    prefix (then every position)."""
    if keyword.prefix[0]:
        return range(len(text.folded))
    if language is None:
        return text.positions(keyword.folded[0])
    return text.stem_positions(language, keyword.stems[language][0])


def find(keyword: Keyword, text: Words, languages: Sequence[str]) -> str | None:
    """Where ``keyword`` occurs in ``text`` as whole words: the words it matched, or None."""
    size = len(keyword.folded)
    last = len(text.folded) - size
    for start in _starts(keyword, text, None):
        if start > last:
            break
        window = text.folded[start : start + size]
        if all(
            (w.startswith(k) if p else w == k)
            for w, k, p in zip(window, keyword.folded, keyword.prefix, strict=True)
        ):
            return " ".join(text.original[start : start + size])
    for language in languages:
        wanted = keyword.stems.get(language)
        if wanted is None:
            continue
        stems = text.stems(language)
        for start in _starts(keyword, text, language):
            if start > last:
                break
            if all(
                (text.folded[start + i].startswith(keyword.folded[i]))
                if keyword.prefix[i]
                else stems[start + i] == wanted[i]
                for i in range(size)
            ):
                return " ".join(text.original[start : start + size])
    return None

"""Text normalisation and keyword/phrase matching: case- and accent-insensitive, word-bounded,
inflection-aware through Snowball stemmers (one per language, offline; in C through PyStemmer)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
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

    @cached_property
    def triggers(self) -> frozenset[str] | None:
        """The tokens (see ``Words.tokens``) one of which a text must hold for the keyword to
        occur in it: its first word, folded or stemmed; None if that word is a prefix."""
        if self.prefix[0]:
            return None
        stems = (stem_token(lang, s[0]) for lang, s in self.stems.items())
        return frozenset((self.folded[0], *stems))

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


def stem_token(language: str, value: str) -> str:
    """A stem as a token, kept apart from folded words and other languages' stems."""
    return f"{language}\x1f{value}"


def _word_stem_token(word: str, language: str) -> str:
    """``stem_token`` of a word's stem; the hot path of ``Words.tokens``, one cached call a
    word (numbers are not cached, as in ``stem``)."""
    if word.isdigit():
        return stem_token(language, word)
    return _cached_stem_token(word, language)


@lru_cache(maxsize=65536)
def _cached_stem_token(word: str, language: str) -> str:
    return stem_token(language, _stem(word, language))


@dataclass
class Words:
    """The words of one field of a message, indexed by folded form and, on demand, by stem."""

    original: list[str]
    folded: list[str] = field(init=False)
    _at: dict[str, list[int]] = field(default_factory=dict, init=False)
    _stems: dict[str, list[str]] = field(default_factory=dict, init=False)
    _stem_at: dict[str, dict[str, list[int]]] = field(default_factory=dict, init=False)
    _tokens: dict[tuple[str, ...], frozenset[str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.folded = [fold(w) for w in self.original]
        for position, word in enumerate(self.folded):
            self._at.setdefault(word, []).append(position)

    def tokens(self, languages: tuple[str, ...]) -> frozenset[str]:
        """Every folded word and every stem in ``languages`` (as ``stem_token``), cached: one
        set a condition can test its keywords' triggers against in one C call."""
        found = self._tokens.get(languages)
        if found is None:
            stems = (_word_stem_token(w, lang) for lang in languages for w in self.original)
            found = self._tokens[languages] = frozenset(self._at).union(stems)
        return found

    def stems(self, language: str) -> list[str]:
        """Stems of every word in ``language``, cached."""
        if language not in self._stems:
            self._stems[language] = [stem(w, language) for w in self.original]
        return self._stems[language]

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


def _starts(keyword: Keyword, text: Words, language: str | None) -> list[int]:
    """Where the keyword's first word occurs: by prefix, by folded form, or by stem."""
    first = keyword.folded[0]
    if keyword.prefix[0]:
        return [n for n, word in enumerate(text.folded) if word.startswith(first)]
    if language is None:
        return text.positions(first)
    return text.stem_positions(language, keyword.stems[language][0])


def _rest_matches(
    keyword: Keyword, text: Words, start: int, stems: list[str] | None, language: str | None
) -> bool:
    """Whether the keyword's words after the first match the text's from ``start`` on;
    ``stems`` (the text's, in ``language``) compares stems, else folded forms."""
    for n in range(1, len(keyword.folded)):
        word = text.folded[start + n]
        if keyword.prefix[n]:
            ok = word.startswith(keyword.folded[n])
        elif stems is None or language is None:
            ok = word == keyword.folded[n]
        else:
            ok = stems[start + n] == keyword.stems[language][n]
        if not ok:
            return False
    return True


def find(keyword: Keyword, text: Words, languages: Sequence[str]) -> str | None:
    """Where ``keyword`` occurs in ``text`` as whole words: the words it matched, or None."""
    size = len(keyword.folded)
    last = len(text.folded) - size
    if last < 0:
        return None
    passes: list[str | None] = [None]
    if not all(keyword.prefix):  # a prefix compares folded forms in every pass
        passes += [lang for lang in languages if lang in keyword.stems]
    for language in passes:
        stems = None if language is None else text.stems(language)
        for start in _starts(keyword, text, language):
            if start > last:
                break
            if _rest_matches(keyword, text, start, stems, language):
                return " ".join(text.original[start : start + size])
    return None

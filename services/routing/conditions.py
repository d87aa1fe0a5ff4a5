"""Rule conditions: all / any / not over channel, direction, kind, language, text, fields and
consent. Each test returns why it held (a list of explanations) or None when it did not."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from services.routing.text import Keyword, Words, find

#: What a test answers: None (false) or the explanations of why it held (may be empty).
Match = list[str] | None


@dataclass
class Context:
    """What conditions look at: one message, its customer's profile and consent."""

    channel: str
    direction: str
    kind: str
    language: str | None
    #: The languages whose stemmers are tried: the message's language, else all of the ruleset's.
    stem_languages: tuple[str, ...]
    fields: dict[str, Words]
    values: Mapping[str, Any] = field(default_factory=dict)
    withdrawn: frozenset[str] = frozenset()
    _tokens: dict[tuple[str, ...], frozenset[str]] = field(
        default_factory=dict, init=False, repr=False
    )

    def tokens(self, where: tuple[str, ...]) -> frozenset[str]:
        """The tokens (folded words and stems) of the named fields, cached."""
        found = self._tokens.get(where)
        if found is None:
            fields = [w for n in where if (w := self.fields.get(n)) is not None]
            found = frozenset().union(*(w.tokens(self.stem_languages) for w in fields))
            self._tokens[where] = found
        return found

    @property
    def word_count(self) -> int:
        """How many words the message's text and subject have together."""
        return sum(len(w.original) for w in self.fields.values())


class Condition(ABC):
    """A test over a Context."""

    @abstractmethod
    def test(self, ctx: Context) -> Match:
        """Why the condition holds for ``ctx``, or None."""

    def field_paths(self) -> set[str]:
        """Profile fields the condition reads (to load only what rules use)."""
        return set()

    def needs(self) -> frozenset[str] | None:
        """Tokens one of which a message's subject and text together must hold for the
        condition to hold (see ``Words.tokens``), or None when it may hold without any."""
        return None


@dataclass(frozen=True)
class All(Condition):
    """Every item holds."""

    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> Match:
        reasons: list[str] = []
        for item in self.items:
            found = item.test(ctx)
            if found is None:
                return None
            reasons.extend(found)
        return reasons

    def field_paths(self) -> set[str]:
        return set().union(*(i.field_paths() for i in self.items))

    def needs(self) -> frozenset[str] | None:
        # every item must hold, so any item's needs will do: the smallest is the pickiest
        found = [n for i in self.items if (n := i.needs()) is not None]
        return min(found, key=len) if found else None


@dataclass(frozen=True)
class AnyOf(Condition):
    """At least one item holds; the first that does explains it."""

    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> Match:
        for item in self.items:
            found = item.test(ctx)
            if found is not None:
                return found
        return None

    def field_paths(self) -> set[str]:
        return set().union(*(i.field_paths() for i in self.items))

    def needs(self) -> frozenset[str] | None:
        # the one that holds brings its own needs: all of them together, unless one has none
        found = [i.needs() for i in self.items]
        if not found or None in found:
            return None
        return frozenset().union(*(n for n in found if n is not None))


@dataclass(frozen=True)
class Not(Condition):
    """The item does not hold."""

    item: Condition

    def test(self, ctx: Context) -> Match:
        return [] if self.item.test(ctx) is None else None

    def field_paths(self) -> set[str]:
        return self.item.field_paths()


@dataclass(frozen=True)
class OneOf(Condition):
    """channel / direction / kind / language is one of the values."""

    attribute: str
    values: frozenset[str]

    def test(self, ctx: Context) -> Match:
        value = getattr(ctx, self.attribute)
        return [f"{self.attribute}={value}"] if value in self.values else None


@dataclass(frozen=True)
class Text(Condition):
    """Keywords and phrases in the subject and/or text.

    ``any``: at least one occurs; ``all``: every one occurs; ``max_words``: the message has at
    most that many words (so "STOP" alone is an opt-out, "stop sending me invoices" is not).
    """

    any: tuple[Keyword, ...] = ()
    all: tuple[Keyword, ...] = ()
    where: tuple[str, ...] = ("subject", "text")
    max_words: int | None = None

    def _find(self, keyword: Keyword, ctx: Context) -> str | None:
        for name in self.where:
            words = ctx.fields.get(name)
            if words is not None:
                found = find(keyword, words, ctx.stem_languages)
                if found is not None:
                    return found
        return None

    def _explain(self, keyword: Keyword, found: str) -> str:
        same = found.casefold() == keyword.source.casefold()
        return f"'{found}'" if same else f"'{found}'~'{keyword.source}'"

    @cached_property
    def _index(self) -> tuple[dict[str, list[int]], list[int]]:
        """The ``any`` keywords by trigger token (first word, folded or stemmed) and the ones
        starting with a prefix (always candidates); values are positions in ``any``."""
        by_token: dict[str, list[int]] = {}
        prefixed: list[int] = []
        for n, keyword in enumerate(self.any):
            triggers = keyword.triggers
            if triggers is None:
                prefixed.append(n)
                continue
            for token in triggers:
                by_token.setdefault(token, []).append(n)
        return by_token, prefixed

    def _candidates(self, ctx: Context) -> list[Keyword]:
        """The ``any`` keywords whose first word occurs in the message, in rule order."""
        by_token, prefixed = self._index
        chosen = set(prefixed)
        # a key-view intersection runs in C over the smaller side
        for token in by_token.keys() & ctx.tokens(self.where):
            chosen.update(by_token[token])
        return [self.any[n] for n in sorted(chosen)]

    @cached_property
    def _required(self) -> tuple[frozenset[str], ...]:
        """Token sets each of which must meet the message's tokens for the condition to hold:
        one per ``all`` keyword, and the union over the ``any`` keywords (unless one of them
        starts with a prefix); a cheap rejection before any word-by-word matching."""
        required = [t for k in self.all if (t := k.triggers) is not None]
        triggers = [k.triggers for k in self.any]
        if triggers and None not in triggers:
            required.append(frozenset().union(*(t for t in triggers if t is not None)))
        return tuple(required)

    def needs(self) -> frozenset[str] | None:
        # the tokens of the fields in ``where`` are among those of subject and text together
        return min(self._required, key=len) if self._required else None

    def test(self, ctx: Context) -> Match:
        if self.max_words is not None and ctx.word_count > self.max_words:
            return None
        if self._required:
            tokens = ctx.tokens(self.where)
            if any(t.isdisjoint(tokens) for t in self._required):
                return None
        reasons: list[str] = []
        for keyword in self.all:
            found = self._find(keyword, ctx)
            if found is None:
                return None
            reasons.append(self._explain(keyword, found))
        if self.any:
            for keyword in self._candidates(ctx):
                found = self._find(keyword, ctx)
                if found is not None:
                    reasons.append(self._explain(keyword, found))
                    break
            else:
                return None
        return [f"text {', '.join(reasons)}"] if reasons else []


FIELD_OPERATORS = ("equals", "in", "exists", "gte", "lte", "contains")


@dataclass(frozen=True)
class Field(Condition):
    """A profile field (``customer.*``) or an interaction attribute (``attributes.*``)."""

    path: str
    operator: str
    value: Any

    def test(self, ctx: Context) -> Match:
        present = self.path in ctx.values
        actual = ctx.values.get(self.path)
        op, expected = self.operator, self.value
        if op == "exists":
            ok = (present and actual is not None) == bool(expected)
        elif not present or actual is None:
            ok = False
        elif op == "equals":
            ok = _same(actual, expected)
        elif op == "in":
            ok = any(_same(actual, e) for e in expected)
        elif op == "contains":
            items = actual if isinstance(actual, list | tuple | set | frozenset) else [actual]
            ok = any(_same(i, expected) or (_text(expected) in _text(i)) for i in items)
        else:
            try:
                ok = actual >= expected if op == "gte" else actual <= expected
            except TypeError:
                ok = False
        return [f"{self.path} {op} {expected!r}"] if ok else None

    def field_paths(self) -> set[str]:
        return {self.path}


def _text(value: Any) -> str:
    return str(value).casefold()


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return _text(a) == _text(b)
    return bool(a == b)


@dataclass(frozen=True)
class ConsentWithdrawn(Condition):
    """The customer withdrew consent for a purpose (on any channel)."""

    purpose: str

    def test(self, ctx: Context) -> Match:
        return [f"{self.purpose} consent withdrawn"] if self.purpose in ctx.withdrawn else None

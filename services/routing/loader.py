"""Load and validate a YAML ruleset; every error names the file and line (PyYAML's marks)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from schemas import Channel, Department, Direction, Kind, Purpose
from services.routing import language as lang
from services.routing.conditions import (
    FIELD_OPERATORS,
    All,
    AnyOf,
    Condition,
    ConsentWithdrawn,
    Field,
    Not,
    OneOf,
    Text,
)
from services.routing.model import PRIORITIES, Action, ClassifierConfig, Rule, Ruleset
from services.routing.text import STEMMERS, Keyword

DEFAULT_RULES = "default.yaml"

_ID = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
#: ``words`` holds lists referenced elsewhere by YAML anchors; it is not read otherwise.
_TOP = (
    "ruleset",
    "version",
    "languages",
    "language_detection",
    "classifier",
    "fallback",
    "words",
    "rules",
)
_RULE = ("id", "description", "when", "then")
_ACTION = ("department", "priority", "tags", "copies", "withdraw_consent", "ignore")
_TEXT = ("any", "all", "in", "max_words")
_CONDITIONS = (
    "all",
    "any",
    "not",
    "channel",
    "direction",
    "kind",
    "language",
    "text",
    "field",
    "consent_withdrawn",
)
_ENUMS: dict[str, tuple[str, ...]] = {
    "channel": tuple(c.value for c in Channel),
    "direction": tuple(d.value for d in Direction),
    "kind": tuple(k.value for k in Kind),
}


class RulesetError(ValueError):
    """A ruleset that cannot be used; the message names the file and line."""


class _Map(dict[str, Any]):
    line: int = 0
    key_lines: dict[str, int]


class _List(list[Any]):
    line: int = 0
    item_lines: list[int]


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """A safe loader whose mappings and lists remember their lines; duplicate keys refused."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> _Map:
        result = _Map()
        result.line = node.start_mark.line + 1
        result.key_lines = {}
        self.flatten_mapping(node)
        for key_node, value_node in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise RulesetError(f"line {line}: keys must be strings, not {key!r}")
            if key in result:
                raise RulesetError(f"line {line}: duplicate key '{key}'")
            result[key] = self.construct_object(value_node, deep=True)
            result.key_lines[key] = line
        return result

    def construct_list(self, node: yaml.SequenceNode) -> _List:
        result = _List(self.construct_object(child, deep=True) for child in node.value)
        result.line = node.start_mark.line + 1
        result.item_lines = [child.start_mark.line + 1 for child in node.value]
        return result


_Loader.add_constructor(
    "tag:yaml.org,2002:map",
    lambda loader, node: loader.construct_mapping(node),
)
_Loader.add_constructor(
    "tag:yaml.org,2002:seq",
    lambda loader, node: loader.construct_list(node),
)


class _Builder:
    """Turns the loaded YAML into the model, checking every key and value."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.languages: tuple[str, ...] = ()

    def fail(self, line: int, message: str) -> RulesetError:
        return RulesetError(f"{self.source}:{line}: {message}")

    def keys(self, node: _Map, allowed: Iterable[str], what: str) -> None:
        allowed = tuple(allowed)
        for key in node:
            if key not in allowed:
                raise self.fail(
                    node.key_lines[key],
                    f"unknown {what} '{key}' (expected one of: {', '.join(allowed)})",
                )

    def mapping(self, value: Any, line: int, what: str) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, f"{what} must be a mapping")
        return value

    def strings(self, value: Any, line: int, what: str) -> list[str]:
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(i, str | int | float) for i in items):
            raise self.fail(line, f"{what} must be a string or a list of strings")
        return [str(i) for i in items]

    def choice(self, value: Any, line: int, what: str, allowed: Iterable[str]) -> str:
        allowed = tuple(allowed)
        if not isinstance(value, str) or value not in allowed:
            raise self.fail(line, f"{what} must be one of: {', '.join(allowed)} (got {value!r})")
        return value

    def ruleset(self, doc: Any, digest: str) -> Ruleset:
        top = self.mapping(doc, 1, "the ruleset")
        self.keys(top, _TOP, "top-level key")
        line = top.key_lines.get
        if "rules" not in top:
            raise self.fail(top.line, "missing 'rules'")
        codes = self.strings(top.get("languages", ["en"]), line("languages", 1), "languages")
        for code in codes:
            if code not in STEMMERS:
                raise self.fail(line("languages", 1), f"no stemmer for language {code!r}")
            try:
                lang.check(code)
            except ValueError as exc:
                raise self.fail(line("languages", 1), str(exc)) from None
        self.languages = tuple(codes)
        min_confidence, accuracy, cld2 = 0.5, "low", True
        if "language_detection" in top:
            detection = self.mapping(
                top["language_detection"], line("language_detection", 1), "language_detection"
            )
            self.keys(detection, ("min_confidence", "accuracy", "cld2"), "language_detection key")
            min_confidence = self.fraction(detection, "min_confidence", 0.5)
            if "cld2" in detection:
                cld2 = detection["cld2"]
                if not isinstance(cld2, bool):
                    raise self.fail(
                        detection.key_lines["cld2"], "language_detection.cld2 must be true or false"
                    )
            if "accuracy" in detection:
                accuracy = self.choice(
                    detection["accuracy"],
                    detection.key_lines["accuracy"],
                    "language_detection.accuracy",
                    list(lang.ACCURACIES),
                )
        fallback = Department.TRIAGE
        fallback_tags: tuple[str, ...] = ()
        if "fallback" in top:
            node = self.mapping(top["fallback"], line("fallback", 1), "fallback")
            self.keys(node, ("department", "tags"), "fallback key")
            if "department" in node:
                fallback = Department(
                    self.choice(
                        node["department"],
                        node.key_lines["department"],
                        "department",
                        [d.value for d in Department],
                    )
                )
            if "tags" in node:
                fallback_tags = tuple(self.strings(node["tags"], node.key_lines["tags"], "tags"))
        classifier = None
        if top.get("classifier") is not None:
            node = self.mapping(top["classifier"], line("classifier", 1), "classifier")
            self.keys(node, ("examples", "threshold"), "classifier key")
            if not isinstance(node.get("examples"), str):
                raise self.fail(node.line, "classifier.examples must name a JSONL file")
            classifier = ClassifierConfig(
                examples=Path(node["examples"]), threshold=self.fraction(node, "threshold", 0.5)
            )
        rules_node = top["rules"]
        if not isinstance(rules_node, _List) or not rules_node:
            raise self.fail(line("rules", 1), "rules must be a non-empty list")
        rules = [
            self.rule(item, item_line)
            for item, item_line in zip(rules_node, rules_node.item_lines, strict=True)
        ]
        seen: dict[str, int] = {}
        for rule in rules:
            if rule.id in seen:
                raise self.fail(
                    rule.line, f"rule id '{rule.id}' already used on line {seen[rule.id]}"
                )
            seen[rule.id] = rule.line
        return Ruleset(
            name=str(top.get("ruleset", "rules")),
            declared_version=str(top.get("version", "0")),
            digest=digest,
            languages=self.languages,
            min_language_confidence=min_confidence,
            language_accuracy=accuracy,
            language_cld2=cld2,
            rules=tuple(rules),
            fallback=fallback,
            fallback_tags=fallback_tags,
            classifier=classifier,
            source=self.source,
            field_paths=frozenset().union(*(r.when.field_paths() for r in rules)),
        )

    def fraction(self, node: _Map, key: str, default: float) -> float:
        value = node.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise self.fail(node.key_lines.get(key, node.line), f"{key} must be between 0 and 1")
        return float(value)

    def rule(self, value: Any, line: int) -> Rule:
        node = self.mapping(value, line, "a rule")
        self.keys(node, _RULE, "rule key")
        for required in ("id", "when", "then"):
            if required not in node:
                raise self.fail(node.line, f"rule is missing '{required}'")
        rule_id = node["id"]
        if not isinstance(rule_id, str) or not _ID.match(rule_id):
            raise self.fail(
                node.key_lines["id"], "rule id must be lower-case letters, digits, '_', '.', '-'"
            )
        return Rule(
            id=rule_id,
            when=self.condition(node["when"], node.key_lines["when"]),
            then=self.action(node["then"], node.key_lines["then"]),
            description=str(node.get("description", "")),
            line=node.line,
        )

    def action(self, value: Any, line: int) -> Action:
        node = self.mapping(value, line, "then")
        self.keys(node, _ACTION, "action")
        departments = [d.value for d in Department]
        at = node.key_lines.get
        ignore = node.get("ignore", False)
        if not isinstance(ignore, bool):
            raise self.fail(at("ignore", line), "ignore must be true or false")
        if ignore:
            if len(node) > 1:
                raise self.fail(line, "an 'ignore' rule takes no other action")
            return Action(department=None, ignore=True)
        if "department" not in node:
            raise self.fail(node.line, "then needs a 'department' (or 'ignore: true')")
        department = Department(
            self.choice(node["department"], at("department", line), "department", departments)
        )
        copies = tuple(
            Department(self.choice(c, at("copies", line), "copies", departments))
            for c in (
                self.strings(node["copies"], at("copies", line), "copies")
                if "copies" in node
                else []
            )
        )
        if department in copies:
            raise self.fail(at("copies", line), "a rule cannot copy to its own department")
        withdraw = tuple(
            Purpose(
                self.choice(p, at("withdraw_consent", line), "purpose", [p.value for p in Purpose])
            )
            for p in (
                self.strings(
                    node["withdraw_consent"], at("withdraw_consent", line), "withdraw_consent"
                )
                if "withdraw_consent" in node
                else []
            )
        )
        return Action(
            department=department,
            priority=self.choice(
                node.get("priority", "normal"), at("priority", line), "priority", PRIORITIES
            ),
            tags=tuple(self.strings(node["tags"], at("tags", line), "tags"))
            if "tags" in node
            else (),
            copies=copies,
            withdraw_consent=withdraw,
        )

    def condition(self, value: Any, line: int) -> Condition:
        if isinstance(value, _List):
            raise self.fail(line, "a condition must be a mapping (use 'all:' or 'any:' for lists)")
        node = self.mapping(value, line, "a condition")
        if not node:
            raise self.fail(node.line, "empty condition")
        if "field" in node:
            return self.field(node)
        self.keys(node, _CONDITIONS, "condition")
        parts = [self.one(key, node[key], node.key_lines[key]) for key in node]
        return parts[0] if len(parts) == 1 else All(tuple(parts))

    def items(self, value: Any, line: int, key: str) -> tuple[Condition, ...]:
        if not isinstance(value, _List) or not value:
            raise self.fail(line, f"'{key}' takes a non-empty list of conditions")
        return tuple(
            self.condition(item, item_line)
            for item, item_line in zip(value, value.item_lines, strict=True)
        )

    def one(self, key: str, value: Any, line: int) -> Condition:
        if key == "all":
            return All(self.items(value, line, key))
        if key == "any":
            return AnyOf(self.items(value, line, key))
        if key == "not":
            return Not(self.condition(value, line))
        if key in _ENUMS:
            values = [
                self.choice(v, line, key, _ENUMS[key]) for v in self.strings(value, line, key)
            ]
            return OneOf(key, frozenset(values))
        if key == "language":
            values = self.strings(value, line, key)
            for code in values:
                try:
                    lang.check(code)
                except ValueError as exc:
                    raise self.fail(line, str(exc)) from None
            return OneOf("language", frozenset(values))
        if key == "consent_withdrawn":
            return ConsentWithdrawn(self.choice(value, line, key, [p.value for p in Purpose]))
        return self.text(value, line)

    def text(self, value: Any, line: int) -> Text:
        node = self.mapping(value, line, "text")
        self.keys(node, _TEXT, "text operator")
        if "any" not in node and "all" not in node:
            raise self.fail(node.line, "text needs 'any' or 'all' (a list of keywords or phrases)")

        def keywords(key: str) -> tuple[Keyword, ...]:
            if key not in node:
                return ()
            result = []
            for word in self.strings(node[key], node.key_lines[key], f"text.{key}"):
                try:
                    result.append(Keyword.parse(word, self.languages))
                except ValueError as exc:
                    raise self.fail(node.key_lines[key], str(exc)) from None
            return tuple(result)

        where: tuple[str, ...] = ("subject", "text")
        if "in" in node:
            where = tuple(
                self.choice(w, node.key_lines["in"], "text.in", ("subject", "text"))
                for w in self.strings(node["in"], node.key_lines["in"], "text.in")
            )
        max_words = node.get("max_words")
        if max_words is not None and (
            isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1
        ):
            raise self.fail(node.key_lines["max_words"], "max_words must be a positive integer")
        return Text(any=keywords("any"), all=keywords("all"), where=where, max_words=max_words)

    def field(self, node: _Map) -> Field:
        path = node["field"]
        if not isinstance(path, str) or not re.match(r"^(customer|attributes)\.[\w.-]+$", path):
            raise self.fail(
                node.key_lines["field"], "field must name customer.<field> or attributes.<name>"
            )
        operators = [k for k in node if k != "field"]
        for key in operators:
            if key not in FIELD_OPERATORS:
                raise self.fail(
                    node.key_lines[key],
                    f"unknown operator '{key}' (expected one of: {', '.join(FIELD_OPERATORS)})",
                )
        if len(operators) != 1:
            raise self.fail(node.line, "a field condition takes exactly one operator")
        operator = operators[0]
        expected = node[operator]
        if operator == "in" and not isinstance(expected, list):
            raise self.fail(node.key_lines[operator], "'in' takes a list")
        if operator == "exists" and not isinstance(expected, bool):
            raise self.fail(node.key_lines[operator], "'exists' takes true or false")
        return Field(path, operator, list(expected) if operator == "in" else expected)


def parse(text: str, source: str = "<rules>") -> Ruleset:
    """Validate ruleset YAML ``text``; RulesetError names ``source`` and the line."""
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except RulesetError as exc:
        raise RulesetError(f"{source}:{str(exc).removeprefix('line ')}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark else source
        raise RulesetError(f"{where}: invalid YAML: {exc.problem}") from None
    digest = hashlib.sha256(text.encode()).hexdigest()
    return _Builder(source).ruleset(doc, digest)


def load(path: str | Path | None = None) -> tuple[Ruleset, Path]:
    """Read a ruleset file (default: the shipped ``default.yaml``); return it and its folder."""
    if path is None:
        shipped = resources.files("services.routing").joinpath("rules", DEFAULT_RULES)
        with resources.as_file(shipped) as file:
            return parse(file.read_text("utf-8"), f"rules/{DEFAULT_RULES}"), file.parent
    file = Path(path)
    try:
        text = file.read_text("utf-8")
    except OSError as exc:
        raise RulesetError(f"{file}: cannot read: {exc.strerror}") from None
    return parse(text, str(file)), file.parent.resolve()

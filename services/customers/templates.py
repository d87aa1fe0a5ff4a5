"""Pre-approved message templates (WhatsApp's): the command attributes a channel with
templates reads (``template``, ``template_language``, ``template_parameters``), shared by the
console's reply form and the API."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

_TEMPLATE_NAME = re.compile(r"^[a-z0-9_]{1,512}$")
_TEMPLATE_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Z]{2})?$")


def template_attributes(
    name: str, language: str, parameters: str | Sequence[str]
) -> dict[str, str]:
    """The command attributes of a pre-approved template (what a channel with templates
    reads): its name, language (``en_US`` when none) and body parameters (one a line, or a
    list). ValueError with what is wrong."""
    if not _TEMPLATE_NAME.match(name):
        raise ValueError("a template name is lower-case letters, digits and underscores")
    language = language or "en_US"
    if not _TEMPLATE_LANGUAGE.match(language):
        raise ValueError("a template language is a code such as en_US or fr")
    lines = parameters.splitlines() if isinstance(parameters, str) else parameters
    values = [line.strip() for line in lines if line.strip()]
    found = {"template": name, "template_language": language}
    if values:
        found["template_parameters"] = json.dumps(values, ensure_ascii=False)
    return found


def template_text(attributes: dict[str, str]) -> str:
    """What the timeline shows of a template message (its text is Meta's, not ours)."""
    values = json.loads(attributes.get("template_parameters") or "[]")
    shown = f"Template {attributes['template']} ({attributes['template_language']})"
    return f"{shown}: {', '.join(values)}" if values else shown

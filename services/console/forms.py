"""Reading HTML form posts (application/x-www-form-urlencoded) without extra dependencies."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from fastapi import Request

MAX_FORM_BYTES = 256 * 1024
#: What PostgreSQL cannot store (NUL) and what cannot be encoded as UTF-8 (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text`` (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


class Form(dict[str, str]):
    """A posted form: the last value of each field; ``many`` for repeated fields."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self._pairs = pairs

    def many(self, name: str) -> list[str]:
        """Every value of a repeated field (checkboxes, multi-selects)."""
        return [value for key, value in self._pairs if key == name]

    def text(self, name: str, default: str = "") -> str:
        """A field's value, trimmed."""
        return self.get(name, default).strip()

    def unstorable(self) -> str | None:
        """Why the form cannot be stored (a field holding NUL), or None: PostgreSQL would
        refuse it, so an action must answer with this instead of failing on the database."""
        for key, value in self._pairs:
            if not (storable(key) and storable(value)):
                name = _UNSTORABLE.sub("?", key)
                return (
                    f"The {name} field contains a NUL character (U+0000), which cannot be stored."
                )
        return None


async def read_form(request: Request) -> Form:
    """Parse the request's urlencoded body once (cached on ``request.state``)."""
    cached = getattr(request.state, "form", None)
    if isinstance(cached, Form):
        return cached
    content_type = request.headers.get("content-type", "")
    body = await request.body()
    pairs: list[tuple[str, str]] = []
    if content_type.startswith("application/x-www-form-urlencoded") and body:
        pairs = parse_qsl(
            body[:MAX_FORM_BYTES].decode("utf-8", "replace"),
            keep_blank_values=True,
            max_num_fields=200,
        )
    form = Form(pairs)
    request.state.form = form
    return form

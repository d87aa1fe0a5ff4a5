"""Reading HTML form posts (application/x-www-form-urlencoded) without extra dependencies."""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import Request

MAX_FORM_BYTES = 256 * 1024


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

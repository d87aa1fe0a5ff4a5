"""Reading HTML form posts: urlencoded ones by hand, multipart ones (a reply with files) with
python-multipart, through Starlette."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request

MAX_FORM_BYTES = 256 * 1024
#: What PostgreSQL cannot store (NUL) and what cannot be encoded as UTF-8 (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> bool:
    """Whether PostgreSQL can store ``text`` (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


#: Files one form may carry (a reply's attachments).
MAX_FILES = 10


@dataclass(frozen=True)
class Upload:
    """A file posted with a form."""

    name: str
    content_type: str
    data: bytes


class Form(dict[str, str]):
    """A posted form: the last value of each field; ``many`` for repeated fields; ``files``
    posted with it (multipart forms only)."""

    def __init__(self, pairs: list[tuple[str, str]], files: list[Upload] | None = None) -> None:
        super().__init__(pairs)
        self._pairs = pairs
        self.files = files or []

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
    if content_type.startswith("multipart/form-data"):
        form = await _multipart(request)
        request.state.form = form
        return form
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


async def _multipart(request: Request) -> Form:
    """A multipart form: its text fields (each at most MAX_FORM_BYTES) and its files (a
    field with a file name, empty ones left out: a file input nobody used)."""
    parsed = await request.form(max_files=MAX_FILES, max_fields=200, max_part_size=MAX_FORM_BYTES)
    pairs: list[tuple[str, str]] = []
    files: list[Upload] = []
    for key, value in parsed.multi_items():
        if isinstance(value, str):
            pairs.append((key, value))
        elif value.filename:
            data = await value.read()
            kind = (value.content_type or "application/octet-stream").split(";")[0].strip()
            files.append(Upload(value.filename, kind, data))
    await parsed.close()
    return Form(pairs, files)

"""Files visitors send: images and PDFs only, known by their first bytes (the declared type
must agree), within the size limit; anything else is refused with a reason the widget shows."""

from __future__ import annotations

import base64
import binascii
import re

#: What each accepted type's content starts with.
SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "application/pdf": (b"%PDF-",),
}
_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")


class FileRefused(ValueError):
    """A file that may not be taken: ``code`` for the widget, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def accepted_file(name: str, content_type: str, data: str, max_bytes: int) -> tuple[str, bytes]:
    """The file's safe name and bytes; FileRefused when it is too large, not base64, or not
    an image or PDF (by its content, whatever its name says)."""
    if len(data) > (max_bytes + 2) // 3 * 4 + 4:
        raise FileRefused("too_large", f"files may be at most {max_bytes} bytes")
    try:
        content = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise FileRefused("bad_file", "the file's data is not base64") from exc
    if len(content) > max_bytes:
        raise FileRefused("too_large", f"files may be at most {max_bytes} bytes")
    signatures = SIGNATURES.get(content_type.lower())
    if signatures is None or not content.startswith(signatures):
        raise FileRefused("file_type", "only images (PNG, JPEG, GIF) and PDFs can be sent")
    safe = _NAME.sub("_", name).strip(" .") or "file"
    return safe[:255], content

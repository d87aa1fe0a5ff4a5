"""Keep personal data out of the privacy log: mask a customer's values in free text."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "[redacted]"
_EMAIL = re.compile(r"[^\s@]+@[^\s@]+\.[^\s@]+")
_NUMBER = re.compile(r"\+?\d[\d\s().\-]{4,}\d")


def redact(text: str, known: Iterable[str]) -> str:
    """``text`` with the customer's own values (identities, names), any email address and any
    phone-like number replaced by MASK."""
    for value in sorted({k for k in known if k and len(k) >= 3}, key=len, reverse=True):
        text = re.sub(re.escape(value), MASK, text, flags=re.IGNORECASE)
    text = _EMAIL.sub(MASK, text)
    return _NUMBER.sub(MASK, text)

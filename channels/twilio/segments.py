"""Count the SMS segments of a body as Twilio counts (and bills) them.

A body made only of GSM-7 characters is sent in 7-bit encoding: 160 characters fit in one SMS;
a longer body is split into segments of 153 (7 septets go to the concatenation header). The
characters of the GSM-7 extension table take two septets each (an escape, then the character),
and Twilio never splits such a pair across two segments.

Any other character switches the whole body to UCS-2 (UTF-16): 70 code units fit in one SMS,
67 per segment of a longer one. Characters outside the Basic Multilingual Plane (most emoji)
take two code units, which are never split across segments either.

Twilio's "smart encoding" (replacing look-alike Unicode characters with GSM-7 ones) is off
unless enabled on a Messaging Service; it is not modelled here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: The GSM 03.38 basic character set (the escape 0x1B excluded: it introduces the extension).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The GSM 03.38 extension table: each of these takes two septets.
GSM7_EXTENDED = frozenset("\f^{}\\[~]|€")

SINGLE = {"GSM-7": 160, "UCS-2": 70}
PER_SEGMENT = {"GSM-7": 153, "UCS-2": 67}

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class Segments:
    """How a body travels: its encoding, its size in units, and the number of segments."""

    encoding: Encoding
    units: int
    count: int

    def __str__(self) -> str:
        plural = "" if self.count == 1 else "s"
        return f"{self.count} segment{plural}, {self.encoding}, {self.units} units"


def encoding_of(body: str) -> Encoding:
    """GSM-7 when every character is in the GSM-7 tables, else UCS-2."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in body):
        return "GSM-7"
    return "UCS-2"


def _widths(body: str, encoding: Encoding) -> list[int]:
    if encoding == "GSM-7":
        return [2 if c in GSM7_EXTENDED else 1 for c in body]
    return [2 if ord(c) > 0xFFFF else 1 for c in body]


def count_segments(body: str) -> Segments:
    """Count the segments of ``body``; an empty body still takes one SMS."""
    encoding = encoding_of(body)
    widths = _widths(body, encoding)
    units = sum(widths)
    if units <= SINGLE[encoding]:
        return Segments(encoding, units, 1)
    size = PER_SEGMENT[encoding]
    count, used = 1, 0
    for width in widths:
        if used + width > size:  # a character's units never straddle two segments
            count, used = count + 1, 0
        used += width
    return Segments(encoding, units, count)

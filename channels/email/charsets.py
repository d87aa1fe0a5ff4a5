"""Bytes to text for mail as it really comes: missing, wrong and unknown charset labels.

Nothing here raises on bad input: bytes no charset can explain become U+FFFD, and every string
handed out is storable (no NUL, no lone surrogates, which PostgreSQL and the schemas refuse).
"""

from __future__ import annotations

import codecs
import re

from charset_normalizer import from_bytes

#: Labels senders use for text that is really in a superset; decoded as browsers decode them
#: (the WHATWG Encoding Standard), so a cp1252 quote mark labelled ISO-8859-1 is not lost.
SUPERSETS = {
    "iso8859_1": "cp1252",
    "latin_1": "cp1252",
    "iso8859_9": "cp1254",
    "iso8859_11": "cp874",
    "tis_620": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "euc_kr": "cp949",
    "ks_c_5601_1987": "cp949",
    "shift_jis": "cp932",
    "big5": "big5hkscs",
}
#: Labels that say nothing about the bytes: decided from the bytes themselves.
NO_LABEL = frozenset({"ascii", "unknown_8bit", "x_unknown", "8bit", "binary", "default"})
#: ISO-2022-JP is 7-bit: valid ASCII, so only its escape sequences tell it apart.
_ISO2022JP_ESCAPE = re.compile(rb"\x1b(?:\$[@B]|\$\(D|\(J|\(I)")
_ISO2022JP_CODECS = ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2004", "iso2022_jp_2")
_WESTERN = "cp1252"
_UTF8_CODECS = frozenset({"utf_8", "utf_8_sig"})
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
#: Enough text for charset detection to decide; the rest is decoded with what it decided.
DETECTION_SAMPLE = 64 * 1024


def storable(text: str) -> str:
    """``text`` without NUL and with lone surrogates replaced: the hub must be able to store it."""
    return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def codec(label: str | None) -> str | None:
    """Python's codec for a MIME charset label, widened to its superset; None when the label
    is absent, says nothing (us-ascii, unknown-8bit) or names no text encoding Python has."""
    if not label:
        return None
    label = label.strip().strip("\"'").strip()
    try:
        info = codecs.lookup(label)
    except (LookupError, ValueError):
        return None
    name = info.name.replace("-", "_")
    if name in NO_LABEL or not getattr(info, "_is_text_encoding", True):
        return None
    return SUPERSETS.get(name, name)


def _strict(data: bytes, name: str) -> str | None:
    try:
        return data.decode(name)
    except (UnicodeError, LookupError, ValueError):
        return None


def _iso2022jp(data: bytes) -> str | None:
    if not _ISO2022JP_ESCAPE.search(data):
        return None
    for name in _ISO2022JP_CODECS:
        text = _strict(data, name)
        if text is not None:
            return text
    return None


def _mostly_utf8(data: bytes) -> bool:
    """Whether undecodable UTF-8 holds real multi-byte characters too (a few bad bytes in UTF-8
    text) rather than none at all (legacy 8-bit text mislabelled UTF-8)."""
    text = data.decode("utf-8", errors="replace")
    return any(ord(ch) > 0x7F and ch != "\ufffd" for ch in text)


def _detected(data: bytes) -> str | None:
    """What charset-normalizer makes of ``data``; among equally likely answers (short text
    says little) Windows-1252, the most common legacy charset of mail, as browsers assume."""
    results = from_bytes(data[:DETECTION_SAMPLE])
    best = results.best()
    if best is None:
        return None
    ties = [m for m in results if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    if any(_WESTERN in m.could_be_from_charset for m in ties):
        return _strict(data, _WESTERN)
    return _strict(data, best.encoding)


def decode(data: bytes, label: str | None) -> str:
    """``data`` as text: the label when the bytes agree with it, else what the bytes are.

    Valid UTF-8 with non-ASCII characters is UTF-8 whatever the label says (legacy text is
    not valid UTF-8 beyond a few characters by accident); ISO-2022-JP is recognised by its
    escapes; other unlabelled or mislabelled 8-bit text is detected (charset-normalizer).
    """
    if not data:
        return ""
    name = codec(label)
    if data.isascii():
        return storable(_iso2022jp(data) or data.decode("ascii"))
    utf8 = _strict(data, "utf-8")
    if utf8 is not None and (name is None or not name.startswith(("utf_16", "utf_32"))):
        return storable(utf8)
    if name is not None:
        text = _strict(data, name)
        if text is not None:
            return storable(text)
        if name in _UTF8_CODECS and _mostly_utf8(data):
            return storable(data.decode("utf-8", errors="replace"))
    detected = _detected(data)
    if detected is not None:
        return storable(detected)
    return storable(data.decode(name or "utf-8", errors="replace"))


def decode_header(data: bytes, fallback: str | None) -> str:
    """Raw 8-bit header bytes (RFC 6532 says UTF-8; older mailers used their body's charset):
    UTF-8, then ISO-2022-JP escapes, then ``fallback`` (the message's charset), else UTF-8 with
    replacement characters. Headers are too short for detection to be trusted."""
    if data.isascii():
        return storable(_iso2022jp(data) or data.decode("ascii"))
    text = _strict(data, "utf-8")
    if text is None and (name := codec(fallback)) is not None:
        text = _strict(data, name)
    return storable(text if text is not None else data.decode("utf-8", errors="replace"))

"""Header fields read defensively: raw 8-bit bytes decoded, RFC 2047 words decoded, never raising.

Values come from ``Message.raw_items()`` (what the sender wrote, unfolded) and go through the
``email.policy.default`` header classes; a value those classes choke on falls back to the
plain text rather than failing the message.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email import header as rfc2047
from email import policy, utils
from email.message import Message

from channels.email.charsets import decode_header, storable

_FOLD = re.compile(r"\r?\n|\r")
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_SPACE = re.compile(r"\s+")
#: The longest Message-ID kept as it is; a longer one is replaced by its hash, so the
#: deduplication key always fits the event's provider_message_id (512 characters).
MAX_MESSAGE_ID = 500
#: Reply and forward prefixes of the common mail clients, in any case, with optional counters
#: ("Re[2]:", "RE (3):"), before a colon or a full-width colon, French spacing included.
_PREFIX = re.compile(
    r"^\s*(?:re|fwd?|aw|wg|tr|res|rv|enc|ответ|отв)\s*(?:\[\d+\]|\(\d+\))?\s*[:\uff1a]\s*",
    re.IGNORECASE,
)


def raw(msg: Message, name: str, fallback_charset: str | None = None) -> str | None:
    """The first ``name`` field, unfolded, with raw 8-bit bytes decoded; None when absent."""
    values = raw_all(msg, name, fallback_charset, first=True)
    return values[0] if values else None


def raw_all(
    msg: Message, name: str, fallback_charset: str | None = None, *, first: bool = False
) -> list[str]:
    """Every ``name`` field, top (most recently added) first, decoded like :func:`raw`."""
    wanted = name.lower()
    found: list[str] = []
    for key, value in msg.raw_items():
        if key.lower() != wanted:
            continue
        found.append(decode_raw(_FOLD.sub("", str(value)), fallback_charset))
        if first:
            break
    return found


def decode_raw(value: str, fallback_charset: str | None) -> str:
    """A value the parser read from bytes (undecodable bytes escaped as surrogates) decoded
    as header bytes: UTF-8, else the message's charset (see ``charsets.decode_header``)."""
    try:
        data = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:  # real characters: parsed from text, or already decoded
        return storable(value)
    return decode_header(data, fallback_charset)


def text(msg: Message, name: str, fallback_charset: str | None = None) -> str | None:
    """An unstructured field (Subject) with its RFC 2047 words decoded, whitespace collapsed."""
    value = raw(msg, name, fallback_charset)
    if value is None:
        return None
    return _SPACE.sub(" ", storable(_decoded(name, value))).strip()


def _decoded(name: str, value: str) -> str:
    try:
        return str(policy.default.header_factory(name, value))
    except Exception:  # the header classes fail on some malformed encoded words
        return value


def mailboxes(
    msg: Message, name: str, fallback_charset: str | None = None
) -> list[tuple[str, str]]:
    """(display name, lower-cased addr-spec) of every mailbox in address fields ``name``;
    groups are flattened and what is not an address (no ``@``) is left out."""
    found: list[tuple[str, str]] = []
    for value in raw_all(msg, name, fallback_charset):
        for display, address in _parse_addresses(name, value):
            address = storable(address).strip().lower()
            if "@" in address.strip("@") and not any(c.isspace() for c in address):
                found.append((_SPACE.sub(" ", storable(display)).strip(), address))
    return found


def _parse_addresses(name: str, value: str) -> list[tuple[str, str]]:
    try:
        header = policy.default.header_factory(name, value)
        return [(a.display_name, a.addr_spec) for a in getattr(header, "addresses", ())]
    except Exception:  # the header classes fail on some malformed lists: the lenient parser
        return _lenient_addresses(value)


def _lenient_addresses(value: str) -> list[tuple[str, str]]:
    try:
        return utils.getaddresses([value])
    except Exception:  # nothing better to offer than no addresses
        return []


def message_ids(value: str | None) -> list[str]:
    """The msg-ids in a Message-ID, In-Reply-To or References value, without angle brackets;
    a bare id without brackets (seen from broken clients) is taken as it is."""
    if not value:
        return []
    if "=?" in value:  # encoded words: not allowed here, but what some libraries fold into
        value = _encoded_words(value)
    ids = _MSG_ID.findall(value)
    if not ids and (bare := value.strip()) and not any(c.isspace() for c in bare):
        ids = [bare]
    return [_bounded(i) for i in ids]


def _encoded_words(value: str) -> str:
    try:
        return str(rfc2047.make_header(rfc2047.decode_header(value)))
    except Exception:  # a broken encoded word: the value as written
        return value


def _bounded(message_id: str) -> str:
    if len(message_id) <= MAX_MESSAGE_ID:
        return message_id
    return "sha256:" + hashlib.sha256(message_id.encode("utf-8", "replace")).hexdigest()


def date(msg: Message) -> datetime | None:
    """The Date field as an aware datetime (``-0000`` and zone-less dates taken as UTC)."""
    value = raw(msg, "Date")
    if not value:
        return None
    try:
        parsed = utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def normalized_subject(subject: str | None) -> str:
    """``subject`` without any number of reply/forward prefixes (Re:, Fwd:, Fw:, AW:, WG:,
    TR:, RES:, RV:, Ответ:, ENC:, with counters), whitespace collapsed: what threading compares."""
    rest = _SPACE.sub(" ", subject or "").strip()
    while match := _PREFIX.match(rest):
        rest = rest[match.end() :]
    return rest.strip()

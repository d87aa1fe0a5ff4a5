"""What the inbound mail webhooks share: reading their bodies, checking their credentials, and
writing what a provider parsed back into one raw RFC 5322 message for ``mime.parse``.

Every inbound way (SMTP, IMAP, the three webhooks) ends in raw bytes parsed by the same
function, so one mail reaching the hub twice deduplicates by its Message-ID. A provider that
posts the message whole (Mailgun ``body-mime``, SendGrid ``email``, Postmark ``RawEmail``)
hands those bytes on untouched; otherwise :func:`compose` rebuilds a message from the parsed
fields, keeping the original header fields (Message-ID, In-Reply-To, References, ...) byte for
byte. Its multipart boundaries are derived from the content, so the same mail rebuilt twice
(a provider's retry) is the same bytes, and a message without a Message-ID still gets the same
``sha256:`` key from ``mime.parse``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email import errors, policy
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import collapse_rfc2231_value
from urllib.parse import parse_qsl

from channels.base import (
    InboundRequest,
    ParseError,
    PayloadTooLarge,
    SignatureError,
    UnsupportedMediaType,
)
from channels.email.charsets import decode, storable
from channels.email.headers import decode_raw
from channels.email.payload import payload_bytes

FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"
JSON = "application/json"

#: Fields describing the MIME structure of the provider's copy: the rebuilt message has its own.
STRUCTURAL = frozenset(
    {
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
        "content-length",
        "mime-version",
    }
)
#: A header field name (RFC 5322 §3.6.8: printable ASCII but the colon).
_FIELD_NAME = re.compile(r"^[!-9;-~]+$")
_LINE_BREAK = re.compile(r"\r?\n[ \t]*|\r[ \t]*")
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
#: The generator's policy: CRLF line ends, as mail travels.
_POLICY = policy.SMTP


def media_type(request: InboundRequest) -> str:
    """The request's media type, lower-cased, without parameters ("" when none)."""
    return (request.header("content-type") or "").split(";")[0].strip().lower()


def require_media_type(request: InboundRequest, provider: str, *allowed: str) -> str:
    """The media type when it is one of ``allowed``, else UnsupportedMediaType."""
    kind = media_type(request)
    if kind not in allowed:
        expected = " or ".join(allowed)
        raise UnsupportedMediaType(f"{provider} posts {expected}, not {kind or 'no Content-Type'}")
    return kind


def check_size(request: InboundRequest, max_body_bytes: int) -> None:
    """PayloadTooLarge when the body is over the limit (the framework refuses most before)."""
    if len(request.body) > max_body_bytes:
        raise PayloadTooLarge(f"body larger than {max_body_bytes} bytes")


# --- credentials ----------------------------------------------------------------------------


def check_basic_auth(request: InboundRequest, credentials: tuple[str, str], provider: str) -> None:
    """SignatureError unless the Authorization header holds exactly these basic credentials.

    Both parts are compared in constant time, and both always, so the time taken tells
    nothing about which was wrong.
    """
    header = request.header("authorization")
    if not header:
        raise SignatureError(f"{provider}: no Authorization header (basic auth expected)")
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        raise SignatureError(f"{provider}: the Authorization header is not basic auth")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError(f"{provider}: the basic credentials are not base64") from None
    user, colon, password = decoded.partition(b":")
    expected_user, expected_password = (part.encode("utf-8") for part in credentials)
    user_ok = hmac.compare_digest(user, expected_user)
    password_ok = hmac.compare_digest(password, expected_password)
    if not (colon and user_ok & password_ok):
        raise SignatureError(f"{provider}: wrong basic-auth user or password")


def fresh(timestamp: str, now: float, max_age: int, provider: str) -> float:
    """The timestamp as seconds, SignatureError unless within ``max_age`` of ``now``."""
    try:
        when = float(int(timestamp.strip()))
    except ValueError:
        raise SignatureError(f"{provider}: the timestamp {timestamp[:40]!r} is no number") from None
    if abs(now - when) > max_age:
        raise SignatureError(
            f"{provider}: the timestamp is {int(now - when)} s from now, more than {max_age} s"
            " (a replayed request, or a clock out of sync)"
        )
    return when


class ReplayGuard:
    """Tokens (or signatures) of requests already accepted, while they could still be fresh.

    Bounded: entries leave once their timestamp is out of the freshness window, and the oldest
    leave first beyond ``capacity``. Per process: behind several API processes a replay can
    land on another one, where only the Message-ID deduplication downstream catches it.
    """

    def __init__(self, capacity: int = 65_536) -> None:
        self.capacity = capacity
        self._expiry: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def first_use(self, token: str, timestamp: float, *, now: float, max_age: int) -> bool:
        """Record ``token``; False when it was already recorded (a replay)."""
        with self._lock:
            while self._expiry:
                oldest, expiry = next(iter(self._expiry.items()))
                if expiry >= now:
                    break
                del self._expiry[oldest]
            if token in self._expiry:
                return False
            self._expiry[token] = timestamp + max_age
            while len(self._expiry) > self.capacity:
                self._expiry.popitem(last=False)
            return True

    def __len__(self) -> int:
        return len(self._expiry)


# --- form bodies ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FormField:
    """One field of a form body, its value as the bytes sent."""

    name: str
    value: bytes = field(repr=False)
    filename: str | None = None
    content_type: str | None = None
    charset: str | None = None

    def text(self, charset: str | None = None) -> str:
        """The value as text: ``charset`` (else the part's own, else UTF-8) when the bytes
        agree with it, else what they are (see ``charsets.decode``)."""
        return decode(self.value, charset or self.charset or "utf-8")


@dataclass(frozen=True)
class Form:
    """A form body's fields in order; names are matched case-insensitively."""

    fields: tuple[FormField, ...]

    def get(self, name: str) -> FormField | None:
        """The first field called ``name``."""
        wanted = name.lower()
        return next((f for f in self.fields if f.name.lower() == wanted), None)

    def text(self, name: str, charset: str | None = None) -> str | None:
        """The first field called ``name`` as text, None when absent."""
        found = self.get(name)
        return None if found is None else found.text(charset)

    def json(self, name: str, provider: str) -> object:
        """The field ``name`` parsed as JSON (None when absent or empty); ParseError if it is
        not JSON."""
        text = self.text(name)
        if text is None or not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ParseError(f"{provider}: the {name} field is not JSON: {exc}") from None


def read_form(request: InboundRequest, provider: str, *allowed: str) -> Form:
    """The form body, urlencoded or multipart, values kept as bytes.

    UnsupportedMediaType for another media type, ParseError for a body that is not what its
    Content-Type says.
    """
    kind = require_media_type(request, provider, *allowed)
    if kind == FORM:
        return _urlencoded(request.body)
    return _multipart(request, provider)


def _urlencoded(body: bytes) -> Form:
    """Percent escapes decoded to the bytes they stand for (Latin-1 maps byte to character),
    so a raw message in a field keeps every byte, whatever its charset."""
    pairs = parse_qsl(
        body.decode("latin-1"), keep_blank_values=True, encoding="latin-1", errors="strict"
    )
    return Form(
        tuple(
            FormField(name.encode("latin-1").decode("utf-8", "replace"), value.encode("latin-1"))
            for name, value in pairs
        )
    )


def _multipart(request: InboundRequest, provider: str) -> Form:
    """A multipart/form-data body split by the standard library's MIME parser (RFC 7578
    form data is MIME multipart), given the request's Content-Type as its header."""
    content_type = _LINE_BREAK.sub(" ", request.header("content-type") or "")
    head = b"Content-Type: " + content_type.encode("latin-1", "replace") + b"\r\n\r\n"
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(head + request.body)
    except Exception as exc:  # the parser is lenient; whatever defeats it is unreadable
        raise ParseError(f"{provider}: the multipart body cannot be read: {exc}") from exc
    if not msg.get_boundary():
        raise ParseError(f"{provider}: multipart/form-data without a boundary parameter")
    parts = msg.get_payload()
    if not isinstance(parts, list) or not parts:
        raise ParseError(f"{provider}: the multipart body has no part with its boundary")
    if any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in msg.defects):
        raise ParseError(f"{provider}: the multipart body is truncated (no closing boundary)")
    return Form(tuple(_form_field(part) for part in parts if isinstance(part, Message)))


def _form_field(part: Message) -> FormField:
    name = _param(part, "name", "content-disposition") or ""
    filename = _param(part, "filename", "content-disposition")
    declared = part.get("content-type")
    return FormField(
        name=name,
        value=payload_bytes(part),
        filename=filename,
        content_type=part.get_content_type() if declared else None,
        charset=part.get_content_charset(),
    )


def _param(part: Message, name: str, header: str) -> str | None:
    """A parameter of a part's header, RFC 2231 collapsed, raw 8-bit bytes read as UTF-8
    (what browsers and providers put in ``filename="..."``). The field is decoded before its
    parameters are split: compat32 would turn its 8-bit bytes into replacement characters."""
    raw = next((str(v) for k, v in part.raw_items() if k.lower() == header), None)
    if raw is None:
        return None
    decoded = Message()
    decoded[header] = _LINE_BREAK.sub(" ", decode_raw(raw, None))
    try:
        value = decoded.get_param(name, header=header)
    except Exception:  # unreadable parameters are absent ones
        return None
    if isinstance(value, tuple):
        value = collapse_rfc2231_value(value)
    return value if isinstance(value, str) else None


def numbered_files(form: Form, prefix: str) -> list[tuple[int, FormField]]:
    """The fields called ``<prefix><n>``, in the order of ``n``."""
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+)$", re.IGNORECASE)
    found = [(int(m.group(1)), f) for f in form.fields if (m := pattern.match(f.name))]
    return sorted(found, key=lambda item: item[0])


def declared_count(form: Form, name: str, provider: str) -> int:
    """A count field (``attachment-count``), 0 when absent; ParseError when not a number."""
    value = (form.text(name) or "").strip()
    if not value:
        return 0
    if not value.isdigit():
        raise ParseError(f"{provider}: {name} is not a number: {value[:40]!r}")
    return int(value)


# --- rebuilding a message -------------------------------------------------------------------


@dataclass(frozen=True)
class Attachment:
    """A file the provider split out of the message."""

    filename: str | None
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False


def merge_headers(
    original: Iterable[tuple[str, str]], fallbacks: Iterable[tuple[str, str | None]]
) -> list[tuple[str, str]]:
    """The original header fields but the MIME structural ones, then each fallback whose
    name none of them has (a provider's parsed From, To, Subject... for fields its header
    list lacks)."""
    headers = [(n, v) for n, v in original if n.strip().lower() not in STRUCTURAL]
    present = {n.strip().lower() for n, _ in headers}
    for name, value in fallbacks:
        if value is not None and value.strip() and name.lower() not in present:
            headers.append((name, value))
            present.add(name.lower())
    return headers


def has_header(headers: Iterable[tuple[str, str]], name: str) -> bool:
    """Whether a field called ``name`` is among ``headers``."""
    return any(n.strip().lower() == name.lower() for n, _ in headers)


def bracketed(content_id: str | None) -> str | None:
    """A Content-ID as a msg-id, ``<...>``, whatever way the provider wrote it."""
    if not content_id:
        return None
    bare = content_id.strip()
    if bare.lower().startswith("cid:"):
        bare = bare[4:]
    bare = bare.strip().strip("<>").strip()
    return f"<{bare}>" if bare and not any(c.isspace() for c in bare) else None


def compose(
    headers: Iterable[tuple[str, str]],
    text: str | None,
    html: str | None,
    attachments: Iterable[Attachment] = (),
) -> bytes:
    """A raw RFC 5322 message: ``headers`` as given (raw UTF-8 where not ASCII, RFC 6532;
    the MIME structural ones left out), then a MIME body built by ``EmailMessage`` from the
    text, the HTML and the attachments. Deterministic: the same input gives the same bytes."""
    headers = [(n, v) for n, v in headers if n.strip().lower() not in STRUCTURAL]
    files = list(attachments)
    body = EmailMessage(policy=_POLICY)
    if html is not None and text is None:
        body.set_content(storable(html), subtype="html")
    else:
        body.set_content(storable(text or ""))
        if html is not None:
            body.add_alternative(storable(html), subtype="html")
    for attachment in files:
        _attach(body, attachment)
    if "MIME-Version" not in body:
        body["MIME-Version"] = "1.0"
    seed = _seed(headers, text, html, files)
    containers = (p for p in body.walk() if p.get_content_maintype() == "multipart")
    for index, part in enumerate(containers):
        part.set_boundary(f"=_omnihub_{seed}_{index}")
    return b"".join(_header_line(n, v) for n, v in headers) + body.as_bytes(policy=_POLICY)


def _header_line(name: str, value: str) -> bytes:
    """``Name: value`` CRLF, unfolded; a value read from raw bytes gets those bytes back."""
    name = name.strip()
    if not _FIELD_NAME.match(name):
        return b""
    value = _LINE_BREAK.sub(" ", value).replace("\x00", "").strip()
    return f"{name}: ".encode("ascii") + _utf8(value) + b"\r\n"


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape: not a character
        return text.encode("utf-8", "replace")


def _attach(body: EmailMessage, attachment: Attachment) -> None:
    kind = attachment.content_type.strip().lower()
    if not _MEDIA_TYPE.match(kind) or kind.startswith("multipart/"):
        kind = "application/octet-stream"
    maintype, _, subtype = kind.partition("/")
    disposition = "inline" if attachment.inline else "attachment"
    cid = bracketed(attachment.content_id)
    filename = attachment.filename or None
    if kind in ("message/rfc822", "message/global"):
        # a forwarded message: attached as a message, so it is parsed as one (base64, which
        # bytes would get, is not allowed for message/rfc822 and would hide it)
        nested = BytesParser(policy=_POLICY).parsebytes(attachment.data)
        if nested.keys():
            body.add_attachment(nested, disposition=disposition, filename=filename, cid=cid)
            return
        maintype, subtype = "application", "octet-stream"
    body.add_attachment(
        attachment.data,
        maintype,
        subtype,
        disposition=disposition,
        filename=filename,
        cid=cid,
    )


def _seed(
    headers: list[tuple[str, str]], text: str | None, html: str | None, files: list[Attachment]
) -> str:
    """A digest of everything the message holds: its boundaries, which the content cannot
    contain (it would have to contain its own digest)."""
    digest = hashlib.sha256()
    pieces: list[bytes] = [_utf8(f"{n}:{v}") for n, v in headers]
    pieces += [_utf8(text or ""), _utf8(html or "")]
    for f in files:
        meta = f"{f.filename}|{f.content_type}|{f.content_id}|{f.inline}"
        pieces += [_utf8(meta), f.data]
    for piece in pieces:
        digest.update(len(piece).to_bytes(8, "big"))
        digest.update(piece)
    return digest.hexdigest()[:32]


def json_object(body: bytes, provider: str) -> Mapping[str, object]:
    """A JSON body that must be an object; ParseError otherwise."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ParseError(f"{provider}: the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ParseError(f"{provider}: the JSON body is not an object")
    return data

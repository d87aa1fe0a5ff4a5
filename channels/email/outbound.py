"""An outbound command to the RFC 5322 message the hub sends: pure (no I/O, no clock).

The Message-ID is derived from the command and its conversation, so a resend after a crash
carries the same id (receivers collapse the copies) and the hub can record it before sending
(:func:`message_id`). Every address comes from the command itself, never from its text, and
the HTML alternative is made from the text, escaped: no HTML from a command reaches a mail.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from email import policy, utils
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage

from channels.base.errors import SendError
from channels.email.threads import ThreadSigner, is_token, thread_token
from schemas import Attachment, OutboundCommand

#: Serialises with CRLF; header values stored raw (the Message-ID fields) are written as
#: given: the default folding turns a long msg-id into RFC 2047 words no client threads by.
POLICY = policy.SMTP.clone(refold_source="none")
#: The same for a message whose addresses need SMTPUTF8 (RFC 6531).
POLICY_UTF8 = POLICY.clone(utf8=True)
#: The subject of a command that has none.
DEFAULT_SUBJECT = "Your message"
#: References keep the first id (the root) and the most recent ones (RFC 5322 3.6.4 allows
#: trimming; clients thread by the root and the parent).
MAX_REFERENCES = 20

_MSG_ID = re.compile(r"^[^<>\s@\"()\[\],;:\\]+@[^<>\s@\"()\[\],;:\\]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_CONTENT_TYPE = re.compile(r"^([a-z0-9][a-z0-9!#$&^_.+-]*)/([a-z0-9][a-z0-9!#$&^_.+-]*)$")
_PARAGRAPHS = re.compile(r"\n[ \t]*\n+")


def conversation(command: OutboundCommand) -> str:
    """The thread token the message carries: the command's conversation when it is one of
    ours, else one derived from the command (a new conversation, stable across resends)."""
    if command.thread is not None and is_token(command.thread.id):
        return command.thread.id
    return thread_token(str(command.command_id))


def message_id(command: OutboundCommand, signer: ThreadSigner) -> str:
    """The Message-ID (without angle brackets) the message for ``command`` gets."""
    return signer.message_id(command.command_id, conversation(command))


def _one_line(value: str) -> str:
    """A header value without the line breaks and controls that would inject headers."""
    return _CONTROL.sub(" ", value).strip()


def _bare_id(value: str) -> str | None:
    """A Message-ID without brackets when ``value`` is one, else None."""
    bare = value.strip().removeprefix("<").removesuffix(">").strip()
    return bare if _MSG_ID.match(bare) else None


def references(command: OutboundCommand) -> list[str]:
    """The References of the message, bare: the chain the command carries, then the message
    answered; duplicates and anything that is no Message-ID dropped."""
    chain = command.attributes.get("references")
    found = chain.split() if isinstance(chain, str) else []
    if command.thread is not None and command.thread.reply_to:
        found.append(command.thread.reply_to)
    ids: list[str] = []
    seen: set[str] = set()
    for value in found:
        bare = _bare_id(value)
        if bare is not None and bare.lower() not in seen:
            seen.add(bare.lower())
            ids.append(bare)
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def _address(value: str, what: str) -> Address:
    try:
        address = Address(addr_spec=_one_line(value))
    except (HeaderParseError, IndexError, ValueError) as exc:
        raise SendError(f"{what} {value[:80]!r} is not an address", code="bad_address") from exc
    if not address.username or not address.domain:
        raise SendError(f"{what} {value[:80]!r} is not an address", code="bad_address")
    return address


def to_address(command: OutboundCommand) -> str:
    """Where the message goes: the address the customer's message asked replies to go to
    (``attributes["reply_to"]``, its Reply-To), else the command's recipient."""
    asked = command.attributes.get("reply_to")
    return asked.strip() if isinstance(asked, str) and asked.strip() else command.to.value


def cc_addresses(command: OutboundCommand, sender: str) -> list[str]:
    """The Cc the command asks for (``attributes["cc"]``, comma-separated: a reply to all),
    without the customer, the sending inbox and duplicates."""
    raw = command.attributes.get("cc")
    if not isinstance(raw, str) or not raw.strip():
        return []
    skip = {command.to.value.lower(), to_address(command).lower(), sender.lower()}
    found: list[str] = []
    for _name, value in utils.getaddresses([_one_line(raw)]):
        if not value:
            continue
        address = _address(value, "Cc").addr_spec
        if address.lower() not in skip:
            skip.add(address.lower())
            found.append(address)
    return found


def recipients(command: OutboundCommand, sender: str) -> list[str]:
    """The envelope recipients: the customer (or the address it asked replies to go to),
    then the Cc, all from the command."""
    return [_address(to_address(command), "recipient").addr_spec, *cc_addresses(command, sender)]


def is_automatic(command: OutboundCommand) -> bool:
    """Whether the hub sends it on its own (an acknowledgement), not an agent."""
    return command.attributes.get("automatic") is True


def text_to_html(text: str) -> str:
    """The text as a small HTML document: escaped, paragraphs and line breaks kept."""
    normal = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    paragraphs = [part for part in _PARAGRAPHS.split(normal) if part.strip()]
    body = "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in part.split("\n")) + "</p>"
        for part in paragraphs
    )
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body dir="auto">\n{body}\n</body></html>\n'
    )


def _folded_ids(ids: Iterable[str]) -> str:
    """Bracketed ids, one a line: folded between ids, never inside one."""
    return "\n ".join(f"<{bare}>" for bare in ids)


def _content_type(attachment: Attachment) -> tuple[str, str]:
    match = _CONTENT_TYPE.match((attachment.content_type or "").strip().lower().split(";")[0])
    return (match[1], match[2]) if match else ("application", "octet-stream")


def _filename(attachment: Attachment, index: int) -> str:
    name = _one_line(attachment.name or "").replace("/", "_").replace("\\", "_")
    return name or f"attachment-{index + 1}"


def needs_smtputf8(addresses: Iterable[str]) -> bool:
    """Whether an address has non-ASCII characters (RFC 6531 SMTPUTF8 needed to send it)."""
    return not all(address.isascii() for address in addresses)


def build_message(
    command: OutboundCommand,
    *,
    signer: ThreadSigner,
    sender: str,
    sender_name: str | None = None,
    files: Sequence[tuple[Attachment, bytes]] = (),
    date: datetime | None = None,
) -> EmailMessage:
    """The message for ``command`` sent from the inbox ``sender``; ``files`` are the
    command's attachments with their bytes, ``date`` defaults to the command's creation.
    SendError(code="bad_address") when an address of the command is not one."""
    thread = conversation(command)
    from_address = _address(sender, "sender")
    to = _address(to_address(command), "recipient")
    cc = cc_addresses(command, from_address.addr_spec)
    utf8 = needs_smtputf8([from_address.addr_spec, to.addr_spec, *cc])
    message = EmailMessage(policy=POLICY_UTF8 if utf8 else POLICY)
    name = _one_line(sender_name or "")
    message["From"] = Address(display_name=name, addr_spec=from_address.addr_spec)
    message["To"] = to
    if cc:
        message["Cc"] = ", ".join(cc)
    signed = signer.reply_address(from_address.addr_spec, thread)
    message["Reply-To"] = Address(display_name=name, addr_spec=signed)
    message["Subject"] = _one_line(command.subject or "") or DEFAULT_SUBJECT
    message["Date"] = utils.format_datetime(date or command.created_at)
    message.set_raw("Message-ID", f"<{signer.message_id(command.command_id, thread)}>")
    answered = command.thread.reply_to if command.thread is not None else None
    parent = _bare_id(answered) if answered else None
    if parent is not None:
        message.set_raw("In-Reply-To", f"<{parent}>")
    chain = references(command)
    if chain:
        message.set_raw("References", _folded_ids(chain))
    if is_automatic(command):
        # RFC 3834: marks the message as a machine's, so autoresponders do not answer it;
        # the second field is what Exchange honours.
        message["Auto-Submitted"] = "auto-generated"
        message["X-Auto-Response-Suppress"] = "All"
    message.set_content(command.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(
        text_to_html(command.text), subtype="html", charset="utf-8", cte="quoted-printable"
    )
    for index, (attachment, data) in enumerate(files):
        maintype, subtype = _content_type(attachment)
        cid = _bare_id(attachment.content_id) if attachment.content_id else None
        message.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype,
            filename=_filename(attachment, index),
            disposition="inline" if attachment.inline else "attachment",
            cid=f"<{cid}>" if cid else None,
        )
    return message


def to_bytes(message: EmailMessage) -> bytes:
    """The message as sent over SMTP: CRLF line ends, 7-bit unless SMTPUTF8 is needed."""
    return message.as_bytes()

"""Conversation tokens in the Message-IDs the hub sends and in reply addresses, signed so a
forged reference cannot write into another customer's conversation.

- ``<{command}.{thread}.{mac}@{domain}>``: the Message-ID of a message the hub sends. It is
  derived from the outbound command, so a resend after a crash carries the same id, and a
  copy coming back (a BCC to an inbox, a list echo) is recognised as ours without a lookup.
- ``{local}+{thread}.{mac}@{domain}``: a reply address that carries the conversation, for
  clients that drop In-Reply-To and References.

A thread token is 26 base32 characters (130 bits). One the hub did not sign is derived from
the sender and the first message of the chain (:func:`unsigned_thread`), so it only ever
groups one sender's own messages.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass

_THREAD = r"[a-z2-7]{26}"
_MAC = r"[a-z2-7]{16}"
_MESSAGE_ID = re.compile(rf"^(?P<command>[0-9a-f]{{32}})\.(?P<thread>{_THREAD})\.(?P<mac>{_MAC})@")
_PLUS = re.compile(rf"^(?P<local>[^+@]+)\+(?P<thread>{_THREAD})\.(?P<mac>{_MAC})@(?P<domain>.+)$")


def _b32(data: bytes, length: int) -> str:
    return base64.b32encode(data).decode("ascii").lower().rstrip("=")[:length]


def thread_token(seed: str) -> str:
    """A thread token derived from ``seed`` (stable: the same seed, the same token)."""
    return _b32(hashlib.sha256(seed.encode("utf-8", "surrogatepass")).digest(), 26)


def unsigned_thread(sender: str | None, root: str) -> str:
    """The conversation of ``root`` (the first Message-ID of a chain) as ``sender`` sees it:
    scoped to the sender, so quoting someone else's Message-ID joins nobody else's thread."""
    return thread_token(f"{sender or ''}\0{root}")


def is_token(value: str) -> bool:
    """Whether ``value`` has the shape of a thread token."""
    return re.fullmatch(_THREAD, value) is not None


@dataclass(frozen=True)
class ThreadSigner:
    """Signs and checks conversation tokens with the channel's key."""

    key: bytes
    domain: str

    def _mac(self, purpose: str, *parts: str) -> str:
        message = "\0".join((purpose, *parts)).encode("utf-8", "surrogatepass")
        return _b32(hmac.new(self.key, message, hashlib.sha256).digest(), 16)

    def message_id(self, command_id: uuid.UUID, thread: str) -> str:
        """The Message-ID (without angle brackets) of the message sent for ``command_id``."""
        command = command_id.hex
        return f"{command}.{thread}.{self._mac('mid', command, thread)}@{self.domain}"

    def thread_of_message_id(self, message_id: str) -> str | None:
        """The thread a Message-ID the hub signed carries; None for any other Message-ID."""
        match = _MESSAGE_ID.match(message_id.lower())
        if match is None:
            return None
        expected = self._mac("mid", match["command"], match["thread"])
        return match["thread"] if hmac.compare_digest(expected, match["mac"]) else None

    def command_of_message_id(self, message_id: str) -> uuid.UUID | None:
        """The outbound command a signed Message-ID was made for (echoes, bounces)."""
        if self.thread_of_message_id(message_id) is None:
            return None
        return uuid.UUID(message_id[:32])

    def reply_address(self, inbox: str, thread: str) -> str:
        """``inbox`` with the conversation in its local part's +tag."""
        local, _, domain = inbox.partition("@")
        return f"{local}+{thread}.{self._mac('addr', local.lower(), thread)}@{domain}"

    def thread_of_address(self, address: str) -> tuple[str, str] | None:
        """``(inbox, thread)`` of a signed reply address; None for any other address."""
        match = _PLUS.match(address.lower())
        if match is None:
            return None
        expected = self._mac("addr", match["local"], match["thread"])
        if not hmac.compare_digest(expected, match["mac"]):
            return None
        return f"{match['local']}@{match['domain']}", match["thread"]

"""Sealed record values: what makes an erased customer's records in Kafka unreadable.

Kafka (and Tansu, which has neither retention nor DeleteRecords) keeps what was written, so
erasure deletes keys instead of records (crypto-shredding). Two schemes:

* ``customer``: AES-256-GCM under a key of one customer, kept in PostgreSQL and deleted when the
  customer is erased; every topic keyed by customer id (routed, outbound, sessions, customers).
* ``period``: what the channel adapters publish before anyone knows the customer (interactions,
  their dead letters). An adapter holds only the period's X25519 *public* key, so it can seal but
  never read; the hub deletes each period's private key after a bounded time, and with it every
  record sealed in that period becomes unreadable.

The value is ``nonce (12 bytes) || ciphertext || tag``; the key id is bound as associated data,
so a value moved under another key id does not open.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

#: ``content-type`` of a sealed value; the plaintext's own type is in SEALED_TYPE_HEADER.
SEALED_CONTENT_TYPE = "application/vnd.omnihub.sealed"
#: Header names (the CloudEvents headers stay readable: ids, types, times are not personal).
SCHEME_HEADER = "x-omnihub-sealed"
KEY_ID_HEADER = "x-omnihub-key-id"
EPHEMERAL_HEADER = "x-omnihub-sealed-ephemeral"
SEALED_TYPE_HEADER = "x-omnihub-sealed-content-type"

Scheme = Literal["customer", "period"]
KEY_BYTES = 32
NONCE_BYTES = 12
_HKDF_INFO = b"omnihub sealed record v1"


class SealError(ValueError):
    """A sealed value that cannot be opened: unknown scheme, missing header or key, tampered."""


@dataclass(frozen=True, slots=True)
class Seal:
    """How one value was sealed: the headers that go beside it."""

    scheme: Scheme
    key_id: str
    ephemeral: str = ""  # period scheme: the sender's X25519 public key, base64

    def headers(self, content_type: str = "application/json") -> list[tuple[str, bytes]]:
        """The record headers naming this seal (the caller drops its own content-type)."""
        headers = [
            ("content-type", SEALED_CONTENT_TYPE.encode()),
            (SEALED_TYPE_HEADER, content_type.encode()),
            (SCHEME_HEADER, self.scheme.encode()),
            (KEY_ID_HEADER, self.key_id.encode()),
        ]
        if self.ephemeral:
            headers.append((EPHEMERAL_HEADER, self.ephemeral.encode()))
        return headers

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Seal | None:
        """The seal named by decoded headers; None when the value is not sealed."""
        if headers.get("content-type") != SEALED_CONTENT_TYPE:
            return None
        scheme = headers.get(SCHEME_HEADER, "")
        key_id = headers.get(KEY_ID_HEADER, "")
        if scheme not in ("customer", "period") or not key_id:
            raise SealError(f"sealed value without a valid {SCHEME_HEADER}/{KEY_ID_HEADER}")
        ephemeral = headers.get(EPHEMERAL_HEADER, "")
        if scheme == "period" and not ephemeral:
            raise SealError(f"period-sealed value without {EPHEMERAL_HEADER}")
        return cls(scheme, key_id, ephemeral)  # type: ignore[arg-type]


def new_key() -> bytes:
    """A fresh 256-bit key."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, key_id: str, plaintext: bytes) -> bytes:
    """``plaintext`` sealed under ``key`` (AES-256-GCM, random nonce, key id as associated data)."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, key_id.encode())


def open_sealed(key: bytes, key_id: str, value: bytes) -> bytes:
    """The plaintext of a value ``seal`` made; SealError when it was altered or the key is wrong."""
    if len(value) < NONCE_BYTES + 16:
        raise SealError("sealed value too short")
    try:
        return AESGCM(key).decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], key_id.encode())
    except InvalidTag as exc:
        raise SealError("sealed value does not open with its key (altered or wrong key)") from exc


@dataclass(frozen=True, slots=True)
class PeriodSealer:
    """A sender's data key for one period: one X25519 agreement, then AES-GCM per record.

    A process makes one when the period starts (or it does), so sealing costs one AES-GCM a
    record; the receiver derives the same key once per (period, sender) from the header.
    """

    period: str
    data_key: bytes
    ephemeral: str

    @classmethod
    def for_public_key(cls, period: str, public_key: bytes) -> PeriodSealer:
        """A new sender key for ``period`` whose public key is ``public_key`` (raw 32 bytes)."""
        ephemeral = X25519PrivateKey.generate()
        ephemeral_public = ephemeral.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(public_key))
        return cls(
            period,
            _derive(shared, period, ephemeral_public),
            base64.b64encode(ephemeral_public).decode(),
        )

    def seal(self, plaintext: bytes) -> tuple[bytes, Seal]:
        """The sealed value and its seal."""
        return seal(self.data_key, self.period, plaintext), Seal(
            "period", self.period, self.ephemeral
        )


def period_of(when: datetime) -> str:
    """The period a record sealed at ``when`` belongs to: its UTC day (YYYY-MM-DD)."""
    return when.astimezone(UTC).date().isoformat()


def period_data_key(private_key: bytes, period: str, ephemeral: str) -> bytes:
    """The data key a sender used, from the period's private key (raw 32 bytes)."""
    try:
        ephemeral_public = base64.b64decode(ephemeral, validate=True)
        peer = X25519PublicKey.from_public_bytes(ephemeral_public)
    except ValueError as exc:
        raise SealError(f"invalid {EPHEMERAL_HEADER}") from exc
    shared = X25519PrivateKey.from_private_bytes(private_key).exchange(peer)
    return _derive(shared, period, ephemeral_public)


def new_period_keypair() -> tuple[bytes, bytes]:
    """A period's (private, public) X25519 key pair, raw 32 bytes each."""
    private = X25519PrivateKey.generate()
    return (
        private.private_bytes_raw(),
        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
    )


def _derive(shared: bytes, period: str, ephemeral_public: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=None,
        info=_HKDF_INFO + b"|" + period.encode() + b"|" + ephemeral_public,
    ).derive(shared)


def without_content_type(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """``headers`` less their content-type (a seal brings its own)."""
    return [(name, value) for name, value in headers if name != "content-type"]

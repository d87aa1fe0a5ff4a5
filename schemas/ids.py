"""Deterministic ids: a provider's retry of the same message yields the same event id."""

from __future__ import annotations

import hashlib
import uuid

#: Namespace of every omnihub uuid5; never change it, ids derived from it are stored.
OMNIHUB_NAMESPACE = uuid.UUID("6f6d6e69-6875-4200-8000-0000000000a1")


def event_id_for(channel: str, provider_message_id: str) -> uuid.UUID:
    """Return the event id of a provider message: uuid5 of channel and provider id."""
    return uuid.uuid5(OMNIHUB_NAMESPACE, f"event:{channel}:{provider_message_id}")


def customer_id_for(identity_key: str) -> uuid.UUID:
    """Return the id a customer first seen with ``identity_key`` gets (same on every worker)."""
    return uuid.uuid5(OMNIHUB_NAMESPACE, f"customer:{identity_key}")


def receipt_id_for(channel: str, provider_message_id: str, state: str) -> uuid.UUID:
    """Return the record id of a provider's delivery receipt (a retried callback: the same)."""
    return uuid.uuid5(OMNIHUB_NAMESPACE, f"receipt:{channel}:{provider_message_id}:{state}")


def client_event_id_for(caller: str, channel: str, provider_message_id: str) -> uuid.UUID:
    """Return the event id of an interaction an authenticated client posted (the API channel):
    uuid5 of the caller (its token id), the channel it posted as and its own message id.

    The caller's ids are its own: two integrations using the same id never share an event id,
    nor does a client with a provider's (``event_id_for``), while a retry by the same caller
    still gets the same one.
    """
    return uuid.uuid5(OMNIHUB_NAMESPACE, f"event:client:{caller}:{channel}:{provider_message_id}")


#: Buckets an identity key falls in (``identity_bucket``): far more people share one than
#: there are partitions, so the Kafka key keeps one person's events in order and names nobody.
IDENTITY_BUCKETS = 1 << 16


def identity_bucket(identity_key: str) -> bytes:
    """The raw interactions' Kafka key: the bucket of ``identity_key`` (``IDENTITY_BUCKETS``)."""
    digest = hashlib.sha256(identity_key.encode()).digest()
    return f"bucket:{int.from_bytes(digest[:2], 'big') % IDENTITY_BUCKETS:04x}".encode()

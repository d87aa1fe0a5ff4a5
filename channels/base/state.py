"""What a source remembers across restarts (an IMAP mailbox's UIDVALIDITY and last UID, a
long-poll's offset): kept by the hub (PostgreSQL), not by the adapter's process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

#: A source's state: small JSON-compatible values.
StateValue = Mapping[str, str | int | float | bool | None]


class SourceState(Protocol):
    """Durable key-value state of one adapter; keys are the adapter's own (e.g. a mailbox)."""

    async def load(self, key: str) -> dict[str, str | int | float | bool | None] | None:
        """The value last saved under ``key``, None if nothing was."""
        ...

    async def save(self, key: str, value: StateValue) -> None:
        """Replace the value under ``key``; returns once it is durable."""
        ...

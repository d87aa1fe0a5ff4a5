"""What a session channel's clients have seen: each conversation's messages, both ways, in the
order the hub took them, numbered, so a client that reconnects asks for what came after the
last number it saw and gets each message exactly once. Kept by the hub (PostgreSQL): every
web process and the dispatcher append to the same log."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Protocol

#: What a client is shown of one message (small JSON-compatible values).
Entry = Mapping[str, str | int | float | bool | None]


class ConversationLog(Protocol):
    """One adapter's conversations (keys are the adapter's, e.g. a visitor's id)."""

    async def append(self, conversation: str, entry_id: uuid.UUID, entry: Entry) -> int:
        """The entry's number in the conversation: the next one, or the one it got when
        appended before (a retry appends nothing); returns once it is durable. OSError when
        the log cannot be written (the client is told to try again)."""
        ...

    async def since(
        self, conversation: str, after: int, limit: int
    ) -> Sequence[tuple[int, dict[str, str | int | float | bool | None]]]:
        """Up to ``limit`` entries numbered above ``after``, in order; OSError when the log
        cannot be read."""
        ...

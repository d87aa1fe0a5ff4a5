"""Whether an agent can answer now: a channel whose customers wait for an answer (web chat)
says "we are offline, leave an address" when no agent who would get the customer's messages
is present. Asked through the ``Presence`` the hub attached
(``ChannelAdapter.attach(presence=...)``); without one, the channel assumes someone is."""

from __future__ import annotations

from typing import Protocol

from schemas import Identity


class Presence(Protocol):
    """Answers from the agents' consoles (best effort, cached briefly)."""

    async def answering(self, who: Identity, department: str | None = None) -> bool:
        """Whether an agent of the department ``who``'s messages go to (their latest routed
        message's, else ``department``, else any) is present; OSError when unknown."""
        ...

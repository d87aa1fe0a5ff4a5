"""Typing indicators: ephemeral, never stored, never on the timeline nor on the broker.

A session channel whose customer types tells the hub through the ``Typing`` it was attached
(``ChannelAdapter.attach(typing=...)``); the hub announces it to the agents watching that
customer. An agent's typing comes back through ``SessionAdapter.show_typing`` in every web
process serving the channel; the one holding the customer's connection shows it there.
"""

from __future__ import annotations

from typing import Protocol

from schemas import Identity


class Typing(Protocol):
    """Announces that a customer is typing (best effort: nothing is kept, a failure is
    dropped, and the call returns promptly whatever happens)."""

    async def customer_typing(self, identity: Identity) -> None:
        """The customer whose identity ``identity`` is (as the channel delivers to it) is
        typing; never raises. Carries no text: only who."""
        ...

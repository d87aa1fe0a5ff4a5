"""The way from a channel's signed-in customer to their self-service pages: a channel whose
customer proved who they are (a web chat visitor the site signed in) asks the hub for a
one-time sign-in token, handed to the customer over their own connection (never in a URL).
Attached as ``ChannelAdapter.attach(accounts=...)``; None where the process has no database."""

from __future__ import annotations

from typing import Protocol

from schemas import Identity


class AccountLinks(Protocol):
    """Issues one-time sign-in tokens for the self-service pages."""

    async def sign_in_token(self, who: Identity) -> str | None:
        """A single-use, short-lived token signing in the customer who holds ``who`` (a
        proven identity only), or None when no customer holds it yet; OSError when the hub
        cannot tell."""
        ...

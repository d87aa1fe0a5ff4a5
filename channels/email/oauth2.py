"""XOAUTH2 access tokens from a refresh token (RFC 6749 6): fetched when a connection signs
in, kept until a minute before they expire, shared by an account's connections; a token the
server refused is forgotten, so the next sign-in fetches a new one."""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from channels.email.imap_config import OAuth2Refresh

log = logging.getLogger(__name__)

#: Seconds before its stated expiry a token is no longer used (clock skew, a slow sign-in).
EARLY = 60.0
#: When the endpoint states no lifetime (RFC 6749 5.1 makes it optional): Microsoft's and
#: Google's default.
DEFAULT_LIFETIME = 3600.0
TIMEOUT = 30.0


class TokenRefused(Exception):
    """The token endpoint gave no access token (its error code, never its whole answer)."""


class AccessTokens:
    """One account's access tokens."""

    def __init__(self, refresh: OAuth2Refresh) -> None:
        self.refresh = refresh
        self._refresh_token = refresh.refresh_token.get_secret_value()
        self._token: str | None = None
        self._until = 0.0
        self._lock = asyncio.Lock()
        #: Tokens fetched (health and tests read it).
        self.fetched = 0

    async def get(self) -> str:
        """A token still valid for a minute; fetched from the endpoint when none is."""
        async with self._lock:
            if self._token is None or time.monotonic() >= self._until:
                self._token, lifetime = await self._fetch()
                self._until = time.monotonic() + max(0.0, lifetime - EARLY)
                self.fetched += 1
            return self._token

    def forget(self, token: str) -> None:
        """The server refused ``token``: the next ``get`` fetches another."""
        if self._token == token:
            self._token = None

    async def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "refresh_token",
            "refresh_token": self._refresh_token,
            "client_id": self.refresh.client_id,
        }
        if self.refresh.client_secret is not None:
            form["client_secret"] = self.refresh.client_secret.get_secret_value()
        if self.refresh.scope:
            form["scope"] = self.refresh.scope
        try:
            async with httpx.AsyncClient(timeout=TIMEOUT, follow_redirects=False) as client:
                answer = await client.post(
                    self.refresh.token_url, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise TokenRefused(f"token endpoint unreachable: {type(exc).__name__}") from exc
        try:
            body = answer.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        token = body.get("access_token")
        if answer.status_code != 200 or not isinstance(token, str) or not token:
            code = body.get("error") if isinstance(body.get("error"), str) else None
            raise TokenRefused(
                f"token endpoint answered {answer.status_code} {str(code or '')[:100]}".strip()
            )
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            # Microsoft rotates refresh tokens; the one it hands back is the one to use next
            self._refresh_token = rotated
        lifetime = body.get("expires_in")
        try:
            seconds = float(lifetime) if lifetime is not None else DEFAULT_LIFETIME
        except (TypeError, ValueError):
            seconds = DEFAULT_LIFETIME
        return token, seconds

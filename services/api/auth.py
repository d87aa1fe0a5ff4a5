"""Bearer tokens: created once, stored only as a hash, checked on every /v1 request."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
from fastapi import HTTPException, Request, status

from services.db.outage import connection_lost

TOKEN_PREFIX = "omh_"  # noqa: S105 - a prefix, not a secret
CACHE_SECONDS = 30.0


class Role(StrEnum):
    """Who may do what: admin everything, agent the console, integration the API channel."""

    ADMIN = "admin"
    AGENT = "agent"
    INTEGRATION = "integration"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller."""

    token_id: uuid.UUID
    role: Role
    name: str


def hash_token(token: str) -> str:
    """Return the stored form of a token (SHA-256; tokens are 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(conn: asyncpg.Connection, role: Role, name: str = "") -> str:
    """Create a token with ``role``, store its hash and return the token (shown once)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_tokens (id, token_hash, role, name) VALUES ($1, $2, $3, $4)",
        uuid.uuid4(),
        hash_token(token),
        role.value,
        name,
    )
    return token


class TokenVerifier:
    """Looks tokens up by hash, caching answers briefly so requests avoid a round trip."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def principal(self, token: str) -> Principal | None:
        """Return who holds ``token``, or None when it is unknown or revoked."""
        digest = hash_token(token)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        try:
            row = await self._lookup(digest)
        except Exception as exc:
            if not connection_lost(exc):
                raise
            row = await self._lookup(digest)  # a read: once more, on a fresh connection
        found = Principal(row["id"], Role(row["role"]), row["name"]) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, found)
        return found

    async def _lookup(self, digest: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT id, role, name FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            digest,
        )


async def authorize(verifier: TokenVerifier, header: str, allowed: set[Role]) -> Principal:
    """The holder of the ``Authorization`` header's bearer token if its role is ``allowed``
    (admin always is); HTTPException 401 (no or unknown token) or 403 (another role)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = await verifier.principal(token.strip())
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if principal.role not in allowed and principal.role is not Role.ADMIN:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {principal.role} may not do this")
    return principal


def require(*roles: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """FastAPI dependency: a valid bearer token with one of ``roles`` (admin always passes)."""
    allowed = set(roles)

    async def dependency(request: Request) -> Principal:
        return await authorize(
            request.app.state.tokens, request.headers.get("authorization", ""), allowed
        )

    return dependency

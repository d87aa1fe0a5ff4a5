"""Bearer tokens: created once, stored only as a hash, checked on every /v1 request.

A token has a role (who holds it) and scopes (what it may do: each /v1 route and each
channel's CLIENT route needs one, ``Scope``), plus the channels it may post interactions as.
Admin tokens hold every scope and every channel, whatever is stored.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import asyncpg
from fastapi import HTTPException, Request, status

from schemas import Channel
from services.api.scopes import Role as Role  # re-exported: callers import it from here
from services.api.scopes import Scope as Scope
from services.db.outage import connection_lost

TOKEN_PREFIX = "omh_"  # noqa: S105 - a prefix, not a secret
CACHE_SECONDS = 30.0
#: Where PostgreSQL announces a revoked token's hash (migration 0014).
TOKENS_CHANNEL = "omnihub_tokens"


ALL_SCOPES: frozenset[Scope] = frozenset(Scope)
#: What a token may post as: every channel but the customers' own pages, which only the hub
#: writes (an integration must not speak for a customer there).
ALL_CHANNELS: frozenset[str] = frozenset(c.value for c in Channel if c is not Channel.SELF_SERVICE)
#: The channels a token may post as unless more are granted.
DEFAULT_CHANNELS: frozenset[str] = frozenset({Channel.API.value})

#: What `omnihub token create` gives a role without ``--scope``: least privilege (an agent
#: token: what the console's agents do; exporting and posting interactions are granted apart).
DEFAULT_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: ALL_SCOPES,
    Role.AGENT: frozenset({Scope.CUSTOMERS_READ, Scope.MESSAGES_SEND, Scope.IDENTITY_WRITE}),
    Role.INTEGRATION: frozenset({Scope.INTERACTIONS_WRITE}),
}
#: What a role could do before scopes existed: what migration 0012 gave existing tokens (with
#: every channel), and what ``create_token`` gives when called without scopes.
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.ADMIN: ALL_SCOPES,
    Role.AGENT: frozenset(
        {
            Scope.INTERACTIONS_WRITE,
            Scope.CUSTOMERS_READ,
            Scope.MESSAGES_SEND,
            Scope.IDENTITY_WRITE,
            Scope.PRIVACY_EXPORT,
        }
    ),
    Role.INTEGRATION: frozenset(
        {Scope.INTERACTIONS_WRITE, Scope.CUSTOMERS_READ, Scope.MESSAGES_SEND}
    ),
}


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: its token's role, scopes and the channels it may post as."""

    token_id: uuid.UUID
    role: Role
    name: str
    scopes: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        token_id: uuid.UUID,
        role: Role,
        name: str,
        scopes: Iterable[str],
        channels: Iterable[str],
    ) -> Principal:
        """The principal of a stored token (an admin holds every scope and channel)."""
        if role is Role.ADMIN:
            return cls(token_id, role, name, frozenset(ALL_SCOPES), ALL_CHANNELS)
        return cls(token_id, role, name, frozenset(scopes), frozenset(channels))


def hash_token(token: str) -> str:
    """Return the stored form of a token (SHA-256; tokens are 256 random bits)."""
    return hashlib.sha256(token.encode()).hexdigest()


async def create_token(
    conn: asyncpg.Connection,
    role: Role,
    name: str = "",
    scopes: Iterable[Scope] | None = None,
    channels: Iterable[str] | None = None,
) -> str:
    """Create a token with ``role``, store its hash and return the token (shown once).

    ``scopes`` and ``channels`` default to the role's rights from before scopes
    (``ROLE_SCOPES``, every channel); `omnihub token create` passes least privilege
    (``DEFAULT_SCOPES``, ``DEFAULT_CHANNELS``) instead. An admin token holds everything.
    """
    granted = ALL_SCOPES if role is Role.ADMIN else ROLE_SCOPES[role] if scopes is None else scopes
    allowed = ALL_CHANNELS if role is Role.ADMIN or channels is None else channels
    unknown = set(allowed) - ALL_CHANNELS
    if unknown:
        raise ValueError(f"unknown channels: {', '.join(sorted(unknown))}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO api_tokens (id, token_hash, role, name, scopes, channels)"
        " VALUES ($1, $2, $3, $4, $5, $6)",
        uuid.uuid4(),
        hash_token(token),
        role.value,
        name,
        sorted(Scope(s).value for s in set(granted)),
        sorted(set(allowed)),
    )
    return token


async def list_tokens(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    """Every token's name, role, scopes, channels, created_at and revoked_at (never a hash),
    oldest first."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT name, role, scopes, channels, created_at, revoked_at FROM api_tokens"
        " ORDER BY created_at, name"
    )
    return rows


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
        found = (
            Principal.of(row["id"], Role(row["role"]), row["name"], row["scopes"], row["channels"])
            if row
            else None
        )
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now + CACHE_SECONDS, found)
        return found

    def forget(self, digest: str) -> None:
        """Drop the cached answer for a token hash (it was revoked: migration 0014)."""
        self._cache.pop(digest, None)

    def clear(self) -> None:
        """Drop every cached answer (revocations may have been missed meanwhile)."""
        self._cache.clear()

    async def _lookup(self, digest: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT id, role, name, scopes, channels FROM api_tokens"
            " WHERE token_hash = $1 AND revoked_at IS NULL",
            digest,
        )


async def authorize(
    verifier: TokenVerifier,
    header: str,
    scopes: Collection[str] = (),
) -> Principal:
    """The holder of the ``Authorization`` header's bearer token if it holds every one of
    ``scopes`` (admin tokens hold all); HTTPException 401 (no or unknown token) or 403
    (naming the missing scope)."""
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
    missing = sorted(set(scopes) - principal.scopes)
    if missing:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"this token lacks the scope {', '.join(missing)}"
        )
    return principal


@dataclass(frozen=True)
class Require:
    """FastAPI dependency: a valid bearer token holding every one of ``scopes`` (admin tokens
    hold all). A class, not a closure, so that the OpenAPI document can read a route's scopes."""

    scopes: tuple[str, ...]

    async def __call__(self, request: Request) -> Principal:
        """The caller, or HTTPException 401 or 403 (``authorize``)."""
        return await authorize(
            request.app.state.tokens, request.headers.get("authorization", ""), self.scopes
        )


def require(scope: Scope) -> Require:
    """FastAPI dependency: a valid bearer token holding ``scope`` (admin tokens hold all)."""
    return Require((scope.value,))

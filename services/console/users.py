"""Console users: username, argon2 password hash, role and departments."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from schemas import Department

_HASHER = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both cases cost the same time (made
    on first use, not at import: hashing would slow every process that imports this)."""
    return _HASHER.hash("omnihub-no-such-user")


MIN_PASSWORD = 12


@cache
def _common_passwords() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most common passwords (lower case), loaded on first use."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(p.lower() for p in FREQUENCY_LISTS["passwords"])


class ConsoleRole(StrEnum):
    """What a console user may do: agents work their departments' queues, supervisors every
    queue and assignments and exports, admins everything (deleting customers, users)."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"

    def at_least(self, other: ConsoleRole) -> bool:
        """Whether this role includes ``other``'s rights."""
        order = [ConsoleRole.AGENT, ConsoleRole.SUPERVISOR, ConsoleRole.ADMIN]
        return order.index(self) >= order.index(other)


@dataclass(frozen=True)
class User:
    """A console user as the pages see it."""

    id: uuid.UUID
    username: str
    role: ConsoleRole
    departments: tuple[Department, ...]

    def can_see(self, department: Department) -> bool:
        """Agents see their own departments' queues; supervisors and admins see all."""
        return self.role.at_least(ConsoleRole.SUPERVISOR) or department in self.departments

    @property
    def actor(self) -> str:
        """How logs name this user."""
        return f"console:{self.username}"


class UserError(ValueError):
    """The user cannot be created as asked."""


def check_new_password(password: str) -> None:
    """Refuse (UserError) a password that is too short or in a list of common passwords;
    used wherever a password is set."""
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if password.lower() in _common_passwords():
        raise UserError(
            "that password is in a list of common passwords (which attackers try first);"
            " choose another"
        )


def hash_password(password: str) -> str:
    """The argon2id PHC string of ``password``."""
    return _HASHER.hash(password)


def user_of(row: asyncpg.Record) -> User:
    """Build a User from a console_users row."""
    return User(
        id=row["id"],
        username=row["username"],
        role=ConsoleRole(row["role"]),
        departments=tuple(Department(d) for d in row["departments"]),
    )


async def create_user(
    conn: asyncpg.Connection,
    username: str,
    password: str,
    role: ConsoleRole,
    departments: Sequence[Department],
) -> User:
    """Create a user; UserError when the name is taken or the password too short or common."""
    check_new_password(password)
    if role is ConsoleRole.AGENT and not departments:
        raise UserError("an agent belongs to at least one department")
    try:
        row = await conn.fetchrow(
            "INSERT INTO console_users (id, username, password_hash, role, departments)"
            " VALUES ($1, $2, $3, $4, $5) RETURNING *",
            uuid.uuid4(),
            username.strip().lower(),
            hash_password(password),
            role.value,
            sorted({d.value for d in departments}),
        )
    except asyncpg.UniqueViolationError:
        raise UserError(f"user {username!r} exists") from None
    except asyncpg.CheckViolationError:
        raise UserError(
            "usernames are 2-63 of a-z 0-9 . _ - (starting with a letter or digit)"
        ) from None
    return user_of(row)


async def check_password(conn: asyncpg.Connection, username: str, password: str) -> User | None:
    """The enabled user with this username and password, or None (in constant-ish time)."""
    row = await conn.fetchrow(
        "SELECT * FROM console_users WHERE username = $1 AND NOT disabled",
        username.strip().lower(),
    )
    stored = row["password_hash"] if row else _dummy_hash()
    try:
        # In a thread: argon2 takes tens of ms and would stall every other request meanwhile.
        await asyncio.to_thread(_HASHER.verify, stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _HASHER.check_needs_rehash(stored):
        await conn.execute(
            "UPDATE console_users SET password_hash = $2 WHERE id = $1",
            row["id"],
            hash_password(password),
        )
    return user_of(row)


async def listing(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Every user, for the admin page and the CLI (never the hashes)."""
    rows = await conn.fetch(
        "SELECT id, username, role, departments, disabled, created_at FROM console_users"
        " ORDER BY username"
    )
    return [dict(r) for r in rows]


async def agents_of(conn: asyncpg.Connection, department: Department) -> list[User]:
    """Enabled users who may be assigned work of ``department``."""
    rows = await conn.fetch(
        "SELECT * FROM console_users WHERE NOT disabled"
        " AND ($1 = ANY(departments) OR role <> 'agent') ORDER BY username",
        department.value,
    )
    return [user_of(r) for r in rows]


async def set_disabled(conn: asyncpg.Connection, username: str, disabled: bool) -> bool:
    """Disable (or enable) a user; a disabled user's sessions end. False if unknown."""
    async with conn.transaction():
        user_id = await conn.fetchval(
            "UPDATE console_users SET disabled = $2 WHERE username = $1 RETURNING id",
            username.strip().lower(),
            disabled,
        )
        if user_id is not None and disabled:
            await conn.execute("DELETE FROM console_sessions WHERE user_id = $1", user_id)
    return user_id is not None

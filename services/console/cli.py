"""`omnihub user ...`: console users (create, list, disable, enable)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, TypeVar

import asyncpg
import typer

from schemas import Department
from services.config import Settings
from services.console import users

app = typer.Typer(help="Agent console users.", no_args_is_help=True)
T = TypeVar("T")


class RoleName(StrEnum):
    """Console roles."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"


def _with_database(action: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from services.db.pool import migrated_pool

    _, database_url = Settings().require_servers()

    async def run() -> T:
        pool = await migrated_pool(database_url)
        try:
            async with pool.acquire() as conn:
                return await action(conn)
        finally:
            await pool.close()

    return asyncio.run(run())


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@app.command("create")
def create(
    username: Annotated[str, typer.Option(help="sign-in name (a-z 0-9 . _ -)")],
    role: Annotated[RoleName, typer.Option(help="agent, supervisor or admin")],
    department: Annotated[
        list[Department] | None,
        typer.Option(help="repeat for several: sales, marketing, finance, after_sales, triage"),
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create a console user; the password is asked for (or read with --password-stdin)."""
    password = _password(password_stdin)
    try:
        user = _with_database(
            lambda conn: users.create_user(
                conn, username, password, users.ConsoleRole(role.value), department or []
            )
        )
    except users.UserError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    departments = ",".join(d.value for d in user.departments) or "-"
    typer.echo(f"created {user.role.value} {user.username} (departments: {departments})")


@app.command("list")
def listing() -> None:
    """List console users (never their password hashes)."""
    for row in _with_database(users.listing):
        state = "disabled" if row["disabled"] else "active"
        departments = ",".join(row["departments"]) or "-"
        typer.echo(f"{row['username']}\t{row['role']}\t{departments}\t{state}")


def _set(username: str, disabled: bool) -> None:
    if not _with_database(lambda conn: users.set_disabled(conn, username, disabled)):
        typer.echo(f"error: no user {username!r}", err=True)
        raise typer.Exit(2)
    typer.echo(f"{username} {'disabled (signed out everywhere)' if disabled else 'enabled'}")


@app.command("disable")
def disable(username: Annotated[str, typer.Option()]) -> None:
    """Disable a user and end their sessions."""
    _set(username, True)


@app.command("enable")
def enable(username: Annotated[str, typer.Option()]) -> None:
    """Enable a disabled user again."""
    _set(username, False)

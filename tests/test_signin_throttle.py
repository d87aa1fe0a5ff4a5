"""Sign-in throttling per username and source address, the sign-in events, common passwords."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from schemas import Department
from services.console import users
from services.console.auth_pages import PRE_COOKIE
from tests.console_support import PASSWORD, ConsoleHttp, make_user
from tests.support import unique

_PRE = re.compile(r'name="pre_token" value="([^"]+)"')
#: uvicorn takes the client address from X-Forwarded-For when the peer is loopback (its
#: FORWARDED_ALLOW_IPS default), which is how these tests sign in "from" other addresses.
_counter = iter(range(1, 250))


def address() -> str:
    """A fresh documentation-range source address for one test."""
    return f"198.51.100.{next(_counter)}"


@pytest.fixture
async def console(api_url: str) -> AsyncIterator[ConsoleHttp]:
    """A browser-like client without a session yet."""
    client = ConsoleHttp(api_url)
    yield client
    await client.close()


async def form_token(console: ConsoleHttp, source: str) -> str:
    """Open the sign-in form from ``source``; return its pre_token."""
    form = await console.get("/console/sign-in", headers={"x-forwarded-for": source})
    found = _PRE.search(form.text)
    assert found
    return found[1]


async def post_sign_in(
    console: ConsoleHttp, token: str, source: str, username: str, password: str
) -> httpx.Response:
    """POST the sign-in form from ``source``."""
    return await console.post(
        "/console/sign-in",
        {"username": username, "password": password, "pre_token": token, "next": "/console"},
        headers={"x-forwarded-for": source},
    )


async def sign_in_from(
    console: ConsoleHttp, source: str, username: str, password: str
) -> httpx.Response:
    """Open the form and sign in from ``source`` (each answer carries a new form token)."""
    return await post_sign_in(
        console, await form_token(console, source), source, username, password
    )


async def test_concurrent_wrong_passwords_check_at_most_the_limit(
    console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    from services.console import throttle

    agent = await make_user(pool, "agent", ["sales"])
    source = address()
    token = await form_token(console, source)
    cookie = {"cookie": f"{PRE_COOKIE}={token}", "x-forwarded-for": source}
    answers = await asyncio.gather(
        *(
            console.http.post(
                "/console/sign-in",
                data={"username": agent.username, "password": f"wrong {i}", "pre_token": token},
                headers=cookie,
            )
            for i in range(20)
        )
    )
    codes = [a.status_code for a in answers]
    # Every 401 is a password that was checked against the hash (and was wrong).
    assert codes.count(401) <= throttle.MAX_FAILURES, codes
    assert set(codes) == {401, 429}, codes
    refused = next(a for a in answers if a.status_code == 429)
    assert re.search(r"wait \d+ seconds?", refused.text), refused.text
    assert int(refused.headers["retry-after"]) >= 1
    failures = await pool.fetchval(
        "SELECT count(*) FROM console_signin_events WHERE username = $1 AND outcome = 'failure'",
        agent.username,
    )
    assert failures == codes.count(401)


async def test_an_attacker_address_does_not_lock_the_user_out_elsewhere(
    console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    agent = await make_user(pool, "agent", ["sales"])
    attacker, home = address(), address()
    for i in range(8):
        await sign_in_from(console, attacker, agent.username, f"guess {i}")
    blocked = await sign_in_from(console, attacker, agent.username, PASSWORD)
    assert blocked.status_code == 429 and not console.signed_in
    assert re.search(r"wait \d+ seconds?", blocked.text), blocked.text
    answer = await sign_in_from(console, home, agent.username, PASSWORD)
    assert answer.status_code == 303 and console.signed_in


async def test_the_throttle_decides_atomically_across_connections(
    pool: asyncpg.Pool, stack: object
) -> None:
    from services.console import throttle

    database_url = stack.database_url  # type: ignore[attr-defined]
    conns = [await asyncpg.connect(database_url) for _ in range(12)]
    try:
        username, source = unique("u").lower(), address()
        verdicts = await asyncio.gather(*(throttle.attempt(c, username, source) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sum(v.allowed for v in verdicts) == throttle.MAX_FAILURES
    assert all(v.wait_seconds >= 1 for v in verdicts if not v.allowed)
    async with pool.acquire() as conn:
        again = await throttle.attempt(conn, username, address())  # another address: free
        assert again.allowed
        await throttle.succeeded(conn, username, source)  # a success clears the pair
        assert (await throttle.attempt(conn, username, source)).allowed


def test_delays_grow_and_are_capped() -> None:
    from services.console import throttle

    delays = [throttle.delay(n) for n in range(1, 30)]
    assert delays[: throttle.MAX_FAILURES - 1] == [0] * (throttle.MAX_FAILURES - 1)
    assert delays[throttle.MAX_FAILURES - 1 : throttle.MAX_FAILURES + 2] == [4, 8, 16]
    assert max(delays) == throttle.MAX_DELAY_SECONDS == delays[-1]


async def test_a_common_password_is_refused(
    pool: asyncpg.Pool, component_env: dict[str, str]
) -> None:
    from tests.test_console_http import omnihub

    async with pool.acquire() as conn:
        for common in ("password1234", "Qwerty123456"):
            with pytest.raises(users.UserError, match="common"):
                await users.create_user(
                    conn, unique("c").lower(), common, users.ConsoleRole.AGENT, [Department.SALES]
                )
    name = unique("c").lower()
    code, _, err = await omnihub(
        component_env,
        "1q2w3e4r5t6y\n",
        *("user", "create", "--username", name, "--role", "agent", "--department", "sales"),
        "--password-stdin",
    )
    assert code == 2 and "list of common passwords" in err, err
    assert await pool.fetchval("SELECT count(*) FROM console_users WHERE username = $1", name) == 0


async def test_sign_in_events_are_listed_for_admins_only(
    console: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    agent = await make_user(pool, "agent", ["sales"])
    admin = await make_user(pool, "admin")
    source = address()
    assert (await sign_in_from(console, source, agent.username, "nope")).status_code == 401
    assert (await sign_in_from(console, source, admin.username, PASSWORD)).status_code == 303
    page = await console.get("/console/admin")
    assert page.status_code == 200 and "Sign-in events" in page.text
    rows = re.findall(r"<tr class=\"signin\">(.*?)</tr>", page.text, re.S)
    assert any(agent.username in r and source in r and "failure" in r for r in rows), rows
    assert any(admin.username in r and source in r and "success" in r for r in rows), rows
    assert "nope" not in page.text and PASSWORD not in page.text
    other = ConsoleHttp(str(console.http.base_url))
    try:
        await other.sign_in(agent.username)
        assert (await other.get("/console/admin")).status_code == 403
    finally:
        await other.close()

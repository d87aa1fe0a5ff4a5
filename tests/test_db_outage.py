"""PostgreSQL down means 503 with Retry-After, one warning (not a traceback per request), and
the web process recovers by itself when PostgreSQL is back (issue #28)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from schemas import Department
from services.api import auth
from services.api.auth import Role, create_token
from services.console import sessions, users
from tests.support import unique

OUTAGE_LOGGER = "services.db.outage"


async def _credentials(url: str) -> tuple[str, str]:
    """An integration token and a signed-in admin's session cookie on the database at ``url``."""
    conn = await asyncpg.connect(url)
    try:
        token = await create_token(conn, Role.INTEGRATION, "outage")
        user = await users.create_user(
            conn,
            unique("admin").lower(),
            "correct horse battery staple",
            users.ConsoleRole.ADMIN,
            [],
        )
        cookie = await sessions.open_session(conn, user.id)
    finally:
        await conn.close()
    return token, cookie


async def test_postgres_down_means_503_then_recovery(
    app_with_own_postgres: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app, postgres = app_with_own_postgres
    token, cookie = await _credentials(postgres.url)
    monkeypatch.setattr(auth, "CACHE_SECONDS", 0.0)  # every request asks PostgreSQL
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    headers = {"authorization": f"Bearer {token}"}
    customer = f"/v1/customers/{uuid.uuid4()}"
    console_page = f"/console/queues/{Department.SALES.value}"

    def interaction() -> dict[str, Any]:
        return {
            "identities": [{"type": "email", "value": "pgdown@example.com"}],
            "text": "hello",
            "provider_message_id": unique("pgdown"),
        }

    async with httpx.AsyncClient(
        transport=transport, base_url="http://hub", headers=headers, timeout=30
    ) as http:
        http.cookies.set(sessions.COOKIE, cookie)
        assert (await http.post("/v1/interactions", json=interaction())).status_code == 202
        assert (await http.get(customer)).status_code == 404
        assert (await http.get(console_page)).status_code == 200

        caplog.clear()
        caplog.set_level(logging.INFO)
        await asyncio.to_thread(postgres.stop)

        for _ in range(12):
            posted = await http.post("/v1/interactions", json=interaction())
            assert posted.status_code == 503, posted.text
            assert posted.headers["retry-after"]
            assert "detail" in posted.json()
            got = await http.get(customer)
            assert got.status_code == 503, got.text
            assert got.headers["retry-after"]
            assert "detail" in got.json()
            page = await http.get(console_page)
            assert page.status_code == 503, page.text
            assert page.headers["retry-after"]
            assert page.headers["content-type"].startswith("text/html")
            assert "unavailable" in page.text.lower()
        ready = await http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] != "ok"

        records = list(caplog.records)
        outage = [r for r in records if r.name == OUTAGE_LOGGER and r.levelno >= logging.WARNING]
        assert 1 <= len(outage) <= 2, [r.getMessage() for r in outage]
        assert "PostgreSQL" in outage[0].getMessage()
        assert not [r for r in records if r.exc_info], "no tracebacks while PostgreSQL is down"
        assert not [r for r in records if r.levelno >= logging.ERROR]

        # the reminder: how long, how many refused
        from services.db import outage as outage_module

        monkeypatch.setattr(outage_module, "REMINDER_SECONDS", 0.2)
        deadline = time.monotonic() + 10
        while not [r for r in caplog.records if "still" in r.getMessage()]:
            assert time.monotonic() < deadline, "no reminder while PostgreSQL is down"
            await asyncio.sleep(0.1)
        reminder = next(r for r in caplog.records if "still" in r.getMessage())
        assert reminder.name == OUTAGE_LOGGER
        assert "36 requests refused" in reminder.getMessage()

        await asyncio.to_thread(postgres.start)
        deadline = time.monotonic() + 30
        while True:
            statuses = (
                (await http.post("/v1/interactions", json=interaction())).status_code,
                (await http.get(customer)).status_code,
                (await http.get(console_page)).status_code,
            )
            if statuses == (202, 404, 200):
                break
            assert time.monotonic() < deadline, f"not back within 30 s: {statuses}"
            await asyncio.sleep(0.2)
        # and every request after that succeeds (no stale connection left in the pool)
        for _ in range(15):
            assert (await http.get(customer)).status_code == 404
            assert (await http.get(console_page)).status_code == 200
        while not [r for r in caplog.records if r.getMessage().startswith("PostgreSQL is back")]:
            assert time.monotonic() < deadline + 5, "no log line saying PostgreSQL is back"
            await asyncio.sleep(0.1)
        back = next(r for r in caplog.records if r.getMessage().startswith("PostgreSQL is back"))
        assert back.name == OUTAGE_LOGGER
        assert (await http.get("/readyz")).status_code == 200
        assert not [r for r in caplog.records if r.exc_info]


def test_only_database_errors_count_as_unavailable() -> None:
    from asyncpg import exceptions as pg

    from services.db.outage import connection_lost, is_unavailable

    assert is_unavailable(pg.CannotConnectNowError("the database system is starting up"))
    assert is_unavailable(pg.ConnectionDoesNotExistError("connection was closed"))
    assert is_unavailable(pg.TooManyConnectionsError("sorry, too many clients already"))
    assert is_unavailable(pg.InterfaceError("pool is closing"))
    assert not is_unavailable(pg.InterfaceError("cannot perform operation: another operation"))
    assert not is_unavailable(pg.UniqueViolationError("duplicate key"))
    assert not is_unavailable(pg.QueryCanceledError("canceling statement"))
    # an OSError or TimeoutError counts only when it came through asyncpg
    assert not is_unavailable(ConnectionRefusedError(111, "somewhere else"))
    assert not is_unavailable(TimeoutError())
    assert not is_unavailable(FileNotFoundError("x"))
    assert connection_lost(pg.ConnectionDoesNotExistError("connection was closed"))
    assert not connection_lost(pg.CannotConnectNowError("starting up"))


async def test_a_token_lookup_is_retried_once_on_a_lost_connection() -> None:
    from asyncpg import exceptions as pg

    class Flaky:
        calls = 0

        async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
            self.calls += 1
            if self.calls == 1:
                raise pg.ConnectionDoesNotExistError("connection was closed in the middle")
            return {
                "id": uuid.uuid4(),
                "role": "integration",
                "name": "flaky",
                "scopes": ["interactions:write"],
                "channels": ["api"],
            }

    pool = Flaky()
    verifier = auth.TokenVerifier(pool)  # type: ignore[arg-type]
    found = await verifier.principal("omh_whatever")
    assert found is not None and found.role is Role.INTEGRATION
    assert pool.calls == 2

"""Session fixtures: one real Tansu broker, one real PostgreSQL, real component processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.api.app import create_app
from services.api.auth import Role, create_token
from services.bus.producer import Producer
from services.config import Settings
from services.db.pool import create_pool
from services.stack.embedded import Stack, start_stack
from services.stack.ports import free_port, wait_for_port
from services.stack.postgres import EmbeddedPostgres
from tests.channels.email.support import email_env
from tests.channels.meta.support import meta_env
from tests.channels.webchat.support import webchat_env
from tests.channels.x.support import x_env
from tests.support import dispatcher_env, start_component, stop_process

# Every hub process the suite starts serves the email channel's SMTP server: on a port of the
# system's choosing, so processes started side by side never fight over 2525.
os.environ.setdefault("OMNIHUB_SMTP_PORT", "0")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's OMNIHUB_DATA_DIR."""
    return tmp_path_factory.mktemp("omnihub")


@pytest.fixture(scope="session")
def stack(data_dir: Path) -> Iterator[Stack]:
    """Embedded Tansu and PostgreSQL, topics created, schema migrated."""
    settings = Settings(OMNIHUB_DATA_DIR=data_dir, KAFKA_BOOTSTRAP_SERVERS=None, DATABASE_URL=None)
    stack = start_stack(settings, durable=False)
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def mail_relay() -> Iterator[Any]:
    """The SMTP relay the hub's outbound mail goes to: a real server on loopback that keeps
    what it receives."""
    from tests.channels.email.support import RecordingRelay

    relay = RecordingRelay(free_port())
    relay.start()
    yield relay
    relay.stop()


@pytest.fixture(scope="session")
def webchat_page_port() -> int:
    """Port of the loopback page that embeds the chat widget (its origin is the site's)."""
    return free_port()


@pytest.fixture(scope="session")
def component_env(
    stack: Stack,
    data_dir: Path,
    twilio_env: dict[str, str],
    telegram_env: dict[str, str],
    mail_relay: Any,
    webchat_page_port: int,
    meta_graph_port: int,
    x_api_port: int,
) -> dict[str, str]:
    """Environment of a component process pointed at the session stack."""
    return dict(
        os.environ,
        KAFKA_BOOTSTRAP_SERVERS=stack.bootstrap,
        DATABASE_URL=stack.database_url,
        OMNIHUB_DATA_DIR=str(data_dir),
        OMNIHUB_LOG_LEVEL="WARNING",
        OMNIHUB_API_DOCS="true",  # tests/test_api.py reads /openapi.json
        **twilio_env,
        **telegram_env,
        **email_env(mail_relay),
        **webchat_env(f"http://127.0.0.1:{webchat_page_port}"),
        **meta_env(meta_graph_port),
        **x_env(x_api_port),  # X switched on (off by default), its API the loopback fake
    )


@pytest.fixture(scope="session")
def processors(component_env: dict[str, str], data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real processors worker (unify, project, delivery agents)."""
    proc = start_component("processors", component_env, data_dir / "processors.log")
    yield proc
    stop_process(proc)


@pytest.fixture(scope="session")
def callback_port() -> int:
    """Port of the loopback server that receives API-channel replies."""
    return free_port()


@pytest.fixture(scope="session")
def dispatcher(
    component_env: dict[str, str], data_dir: Path, callback_port: int
) -> Iterator[subprocess.Popen[bytes]]:
    """A real dispatcher worker whose API channel replies to a loopback callback server."""
    env = dispatcher_env(component_env, callback_port)
    proc = start_component("dispatcher", env, data_dir / "dispatcher.log")
    yield proc
    stop_process(proc)


@pytest.fixture(scope="session")
def api_url(component_env: dict[str, str], data_dir: Path) -> Iterator[str]:
    """A real `omnihub run api` process on a free port."""
    port = free_port()
    env = dict(component_env, OMNIHUB_HTTP_PORT=str(port))
    proc = start_component("api", env, data_dir / "api.log")
    wait_for_port("127.0.0.1", port, 30, alive=lambda: proc.poll() is None)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc)


@pytest.fixture(scope="session")
async def pool(stack: Stack) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the session database."""
    pool = await create_pool(stack.database_url, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def producer(stack: Stack) -> AsyncIterator[Producer]:
    """A started producer on the session broker."""
    producer = Producer(stack.bootstrap)
    await producer.start()
    yield producer
    await producer.stop()


@pytest.fixture(scope="session")
async def tokens(pool: asyncpg.Pool) -> dict[Role, str]:
    """One token per role."""
    async with pool.acquire() as conn:
        return {role: await create_token(conn, role, f"test-{role}") for role in Role}


@pytest.fixture
async def client(api_url: str, tokens: dict[Role, str]) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client with an integration token."""
    headers = {"authorization": f"Bearer {tokens[Role.INTEGRATION]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as http:
        yield http


@pytest.fixture(scope="session")
def twilio_api_port() -> int:
    """Port of the loopback stand-in for Twilio's REST API."""
    return free_port()


@pytest.fixture(scope="session")
def twilio_env(twilio_api_port: int) -> dict[str, str]:
    """The Twilio adapter's settings (the samples' token and public URL, REST to the fake)."""
    from tests.channels.twilio.support import twilio_env

    return twilio_env(twilio_api_port)


@pytest.fixture(scope="session")
async def twilio_api(twilio_api_port: int) -> AsyncIterator[Any]:
    """The stand-in for Twilio's REST API, where the dispatcher's Twilio adapter sends SMS."""
    from tests.channels.twilio.support import FakeTwilio

    fake = FakeTwilio()
    runner = await fake.start(twilio_api_port)
    yield fake
    await runner.cleanup()


@pytest.fixture(scope="session")
def meta_graph_port() -> int:
    """Port of the loopback stand-in for Meta's Graph API (and its CDN)."""
    return free_port()


@pytest.fixture(scope="session")
async def meta_graph(meta_graph_port: int) -> AsyncIterator[Any]:
    """The stand-in for the Graph API, where the Meta adapter sends and fetches media."""
    from tests.channels.meta.support import FakeGraph

    fake = FakeGraph()
    runner = await fake.start(meta_graph_port)
    yield fake
    await runner.cleanup()


@pytest.fixture(scope="session")
def telegram_api_port() -> int:
    """Port of the loopback stand-in for Telegram's Bot API."""
    return free_port()


@pytest.fixture(scope="session")
def telegram_env(telegram_api_port: int) -> dict[str, str]:
    """The Telegram adapter's settings (the samples' secret token, Bot API calls to the fake)."""
    from tests.channels.telegram.support import telegram_env

    return telegram_env(telegram_api_port)


@pytest.fixture(scope="session")
async def telegram_api(telegram_api_port: int) -> AsyncIterator[Any]:
    """The stand-in for the Bot API, where the processors fetch media and the dispatcher's
    Telegram adapter sends."""
    from tests.channels.telegram.support import FakeBotApi

    fake = FakeBotApi()
    runner = await fake.start(telegram_api_port)
    yield fake
    await runner.cleanup()


@pytest.fixture(scope="session")
def x_api_port() -> int:
    """Port of the loopback stand-in for X's API (and its DM media host)."""
    return free_port()


@pytest.fixture(scope="session")
async def x_api(x_api_port: int) -> AsyncIterator[Any]:
    """The stand-in for X's API, where the dispatcher's X adapter sends and the processors
    fetch DM media."""
    from tests.channels.x.support import FakeX

    fake = FakeX()
    runner = await fake.start(x_api_port)
    yield fake
    await runner.cleanup()


@pytest.fixture
async def app_with_own_postgres(stack: Stack, tmp_path: Path) -> AsyncIterator[Any]:
    """The real app in-process, on a PostgreSQL of its own that the test may stop and start
    again: (app, postgres)."""
    postgres = EmbeddedPostgres(tmp_path / "pgdata", durable=False)
    await asyncio.to_thread(postgres.start)
    try:
        settings = Settings(OMNIHUB_DATA_DIR=tmp_path, OMNIHUB_PUBLISH_TIMEOUT=2.0)
        app = create_app(settings, stack.bootstrap, postgres.url)
        async with app.router.lifespan_context(app):
            yield app, postgres
    finally:
        await asyncio.to_thread(postgres.stop)

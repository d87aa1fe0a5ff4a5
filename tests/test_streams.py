"""A worker's faust app is built and run on uvloop (faust takes its loop lazily), with omnihub's
fetch settings on the consumer faust builds."""

from __future__ import annotations

import asyncio
from pathlib import Path

import faust
import pytest

from services.config import Settings
from services.worker.app import faust_app, run_faust


class Built(Exception):
    """Raised by the app factory, so that no worker is started."""


def test_a_worker_builds_its_app_with_uvloop_as_the_event_loop_policy() -> None:
    seen: list[str] = []

    def create() -> faust.App:
        seen.append(type(asyncio.get_event_loop_policy()).__module__)
        raise Built

    before = asyncio.get_event_loop_policy()
    try:
        with pytest.raises(Built):
            run_faust(create, Settings())
    finally:
        asyncio.set_event_loop_policy(before)
    assert seen == ["uvloop"]


async def test_a_worker_consumer_fetches_with_the_configured_wait_and_size(
    tmp_path: Path,
) -> None:
    """faust builds its worker consumer itself; the app's settings still reach it: how long a
    fetch may wait on the broker and how much it waits for."""
    settings = Settings(
        OMNIHUB_DATA_DIR=str(tmp_path), OMNIHUB_FETCH_MAX_WAIT_MS=70, OMNIHUB_FETCH_MIN_BYTES=4096
    )
    app = faust_app("omnihub-test-fetch", settings, "127.0.0.1:9")  # never connected
    thread = app.consumer._new_consumer_thread()
    consumer = thread._create_worker_consumer(app.transport)
    assert (consumer._fetch_max_wait_ms, consumer._fetch_min_bytes) == (70, 4096)
    defaults = Settings(OMNIHUB_DATA_DIR=str(tmp_path))
    assert (defaults.fetch_max_wait_ms, defaults.fetch_min_bytes) == (50, 16384)

"""A worker's faust app is built and run on uvloop (faust takes its loop lazily)."""

from __future__ import annotations

import asyncio

import faust
import pytest

from services.config import Settings
from services.streams import run_faust


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

"""Fixtures of the email tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from channels.base import FileBlobStore
from channels.email import EmailAdapter
from services.bus.producer import Producer
from tests.channels.email.support import settings
from tests.support import sealing_publisher


@pytest.fixture
async def adapter(
    stack: Any, producer: Producer, data_dir: Path, tmp_path: Path
) -> AsyncIterator[EmailAdapter]:
    """The email adapter receiving in-process on the session broker, its files stored where
    the session's hub processes (API, console, dispatcher) read them."""
    email = EmailAdapter(settings(tmp_path))
    email.attach(
        await sealing_publisher(producer, stack.database_url),
        blobs=FileBlobStore(data_dir / "blobs"),
    )
    await email.start()
    yield email
    await email.stop()

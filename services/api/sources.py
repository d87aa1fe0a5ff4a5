"""Runs the source adapters (servers, pollers) a web process serves: starts them, restarts
one that failed after a growing delay, and stops them all at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from channels.base import SourceAdapter
from channels.base.source import cancel

log = logging.getLogger(__name__)

#: Restart delays grow from FIRST_DELAY to MAX_DELAY; a source that ran HEALTHY seconds
#: since its last start begins again at FIRST_DELAY.
FIRST_DELAY = 1.0
MAX_DELAY = 60.0
HEALTHY = 60.0
CHECK_EVERY = 0.5


class SourceSupervisor:
    """Owns the sources' start, watch, restart and stop."""

    def __init__(self, sources: Iterable[SourceAdapter]) -> None:
        self.sources = list(sources)
        self.restarts: dict[str, int] = {s.name: 0 for s in self.sources}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start every source (a failing start is retried by the watcher) and watch them."""
        for source in self.sources:
            with contextlib.suppress(Exception):
                await self._start(source)
        self._task = asyncio.create_task(self._watch(), name="source-supervisor")

    async def stop(self) -> None:
        """Stop watching, then stop every source."""
        task, self._task = self._task, None
        await cancel(task)
        for source in self.sources:
            try:
                await source.stop()
            except Exception:
                log.exception("%s: stop failed", source.name)

    async def _start(self, source: SourceAdapter) -> None:
        try:
            await source.start()
        except Exception:
            log.exception("%s: start failed", source.name)
            raise

    async def _watch(self) -> None:
        delays = {s.name: FIRST_DELAY for s in self.sources}
        started = {s.name: time.monotonic() for s in self.sources}
        due: dict[str, float] = {}
        while True:
            await asyncio.sleep(CHECK_EVERY)
            now = time.monotonic()
            for source in self.sources:
                name = source.name
                if name in due:
                    if now < due[name]:
                        continue
                    del due[name]
                    try:
                        await self._start(source)
                        started[name] = time.monotonic()
                        self.restarts[name] += 1
                    except Exception:
                        due[name] = now + delays[name]
                        delays[name] = min(delays[name] * 2, MAX_DELAY)
                    continue
                failure = source.failure()
                if failure is None:
                    if now - started[name] >= HEALTHY:
                        delays[name] = FIRST_DELAY
                    continue
                log.error(
                    "%s: stopped by itself (%s); restarting in %.0f s", name, failure, delays[name]
                )
                with contextlib.suppress(Exception):
                    await source.stop()
                due[name] = now + delays[name]
                delays[name] = min(delays[name] * 2, MAX_DELAY)

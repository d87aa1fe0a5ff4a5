"""The source shape: a long-running server or poller (an SMTP server, an IMAP poller, a
Telegram long-poll) that the framework starts, watches, restarts and stops.

A small complete example, a poller that asks a provider for new messages every few seconds::

    class InboxPoller(PollingSource):
        name = "inbox"
        channels = frozenset({Channel.EMAIL})
        interval = 5.0

        async def poll(self) -> None:
            messages = await self.client.fetch_new()
            await self.publisher.publish([to_interaction(m) for m in messages])
            await self.client.mark_done(messages)     # only after the broker acknowledged

        async def send(self, command: OutboundCommand) -> SendResult: ...
        async def health(self) -> Health: return Health(ok=True)

The framework calls ``start()`` once the adapter is attached to a publisher, checks
``failure()`` while it runs, and on a failure stops and starts it again with a growing delay
(reset once it ran healthily for a while). ``stop()`` is called once at shutdown and must
return after in-flight work finished or was abandoned without acknowledging it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import abstractmethod

from channels.base.adapter import ChannelAdapter

log = logging.getLogger(__name__)


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (if any) and wait until it has ended."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class SourceAdapter(ChannelAdapter):
    """A channel that receives by running something: started and stopped by the framework."""

    @abstractmethod
    async def start(self) -> None:
        """Begin receiving; return once ready (a server bound, a poller's first task up)."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop receiving and finish or abandon in-flight work; idempotent."""

    def failure(self) -> BaseException | None:
        """What stopped the source by itself, if anything (the framework restarts it)."""
        return None


class PollingSource(SourceAdapter):
    """A source that calls ``poll()`` every ``interval`` seconds in a task of its own."""

    #: Seconds between the end of one poll and the start of the next.
    interval: float = 5.0

    _task: asyncio.Task[None] | None = None
    _failure: BaseException | None = None

    @abstractmethod
    async def poll(self) -> None:
        """Fetch what is new once and publish it; an exception stops the source."""

    async def start(self) -> None:
        """Start the polling task."""
        self._failure = None
        self._task = asyncio.create_task(self._run(), name=f"source:{self.name}")

    async def stop(self) -> None:
        """Cancel the polling task and wait for it."""
        task, self._task = self._task, None
        await cancel(task)

    def failure(self) -> BaseException | None:
        """The exception that ended the polling task."""
        return self._failure

    async def _run(self) -> None:
        try:
            while True:
                await self.poll()
                await asyncio.sleep(self.interval)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("%s: poll failed", self.name)
            self._failure = exc

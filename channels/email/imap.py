"""Polling hosted mailboxes over IMAP: each new message is handed to ``ingest`` once, in UID
order, and only then marked \\Seen or moved.

What was imported is recorded in the hub's :class:`~channels.base.SourceState` as the
folder's UIDVALIDITY and the last UID whose ``ingest`` returned, saved after each message,
never as \\Seen flags: a person reading the mailbox must not make the hub skip mail, and a
restart neither fetches a message twice nor misses one that arrived meanwhile.

Decisions:

- A folder read for the first time is read from its first message (nothing in it is known
  to be imported). When its UIDVALIDITY changes, its old UIDs mean nothing any more, so it
  is read again from its first message too, with a warning: mail may then arrive twice,
  which the hub's deduplication by Message-ID absorbs, while none is lost.
- A message ``ingest`` refuses with anything but :class:`PublishError` is poison: it goes
  to ``quarantine`` with its bytes, then the poller moves past it (into the account's
  quarantine folder when one is set). A message over the size limit is quarantined with
  its header only, never fetched whole.
- Each folder has a connection of its own, since IDLE watches the one selected folder.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
from collections.abc import Awaitable, Callable

import aioimaplib

from channels.base import PublishError, SourceState
from channels.base.source import cancel
from channels.email.imap_client import ImapError, ImapSession
from channels.email.imap_config import ImapAccount, ImapSettings
from channels.email.oauth2 import AccessTokens, TokenRefused

log = logging.getLogger(__name__)

#: ``ingest(raw, origin)``: returns once the message is durably published.
Ingest = Callable[[bytes, str], Awaitable[None]]
#: ``quarantine(raw_or_partial, origin, reason)``: returns once it is dead-lettered.
Quarantine = Callable[[bytes, str, str], Awaitable[None]]

#: Reconnecting after a failure waits FIRST_DELAY, doubling up to MAX_DELAY.
FIRST_DELAY = 1.0
MAX_DELAY = 300.0
#: After the broker failed, the round is tried again this soon (or at the poll interval).
PUBLISH_RETRY_SECONDS = 15.0
#: What the server or the network causes: retried on a new connection, never fatal.
TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    ImapError,
    TokenRefused,  # reported like a refused password, and tried again with the same delays
    aioimaplib.AioImapException,
)


class Taken(enum.Enum):
    """What became of one message."""

    IMPORTED = "imported"
    QUARANTINED = "quarantined"
    GONE = "gone"
    """Expunged between the search and the fetch: nothing to import."""
    REFUSED = "refused"
    """The broker did not take it (nor its quarantine): not past it."""


class Round(enum.Enum):
    """How a round over one folder ended."""

    DONE = "done"
    MORE = "more"
    """A full batch: more is waiting, go on at once."""
    RETRY = "retry"
    """The broker did not take a message: try again later, from the same message."""


def origin(account: str, folder: str, uidvalidity: int, uid: int) -> str:
    """Where a message came from, unique for as long as the folder's UIDVALIDITY lasts."""
    return f"imap:{account}/{folder}/{uidvalidity}/{uid}"


class MailboxPoller:
    """One account's folders: read what is new, hand it over, remember how far it got."""

    def __init__(
        self,
        account: ImapAccount,
        settings: ImapSettings,
        state: SourceState,
        ingest: Ingest,
        quarantine: Quarantine,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.account = account
        self.settings = settings
        self.state = state
        self.ingest = ingest
        self.quarantine = quarantine
        self.ssl_context = ssl_context
        #: The account's XOAUTH2 tokens, shared by its folders' connections.
        self.tokens = AccessTokens(account.oauth2) if account.oauth2 is not None else None
        #: Why a folder's last connection failed, until a round succeeds again (health).
        self.problems: dict[str, str] = {}

    def key(self, folder: str) -> str:
        """The folder's state key."""
        return f"{self.account.name}/{folder}"

    async def poll_once(self) -> None:
        """Read every folder until nothing is new or the broker failed, then disconnect (for
        a caller that paces polls itself, and for tests)."""
        for folder in self.account.folders:
            session = await self._open(folder)
            try:
                while await self._round(session, folder) is Round.MORE:
                    pass
            finally:
                session.close()

    async def run(self) -> None:
        """Watch every folder until cancelled; raises only what is no server's fault."""
        tasks = [
            asyncio.create_task(self._watch(folder), name=f"imap:{self.key(folder)}")
            for folder in self.account.folders
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                await cancel(task)

    async def _open(self, folder: str) -> ImapSession:
        session = await ImapSession.open(self.account, self.ssl_context, self.tokens)
        try:
            await session.select(folder)
        except BaseException:
            session.close()
            raise
        return session

    async def _watch(self, folder: str) -> None:
        """Rounds on one connection, waiting in IDLE (or sleeping) between them; reconnects
        with a growing delay when the server or the network fails."""
        delay = FIRST_DELAY
        while True:
            session: ImapSession | None = None
            try:
                session = await self._open(folder)
                while True:
                    outcome = await self._round(session, folder)
                    self.problems.pop(folder, None)
                    delay = FIRST_DELAY
                    if outcome is Round.RETRY:
                        await asyncio.sleep(min(PUBLISH_RETRY_SECONDS, self.settings.poll_seconds))
                    elif outcome is Round.DONE and not session.take_changed():
                        await session.wait(self.settings.poll_seconds)
            except TRANSIENT as exc:
                self.problems[folder] = f"{type(exc).__name__}: {exc}"[:500]
                log.warning(
                    "imap %s: %s; reconnecting in %.0f s",
                    self.key(folder),
                    self.problems[folder],
                    delay,
                )
            finally:
                if session is not None:
                    session.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)

    async def _last_uid(self, folder: str, uidvalidity: int) -> int:
        """The last UID imported from the folder as it is now; 0 when none is known."""
        key = self.key(folder)
        saved = await self.state.load(key)
        if saved is None:
            return 0
        last = saved.get("last_uid")
        if saved.get("uidvalidity") == uidvalidity and isinstance(last, int):
            return last
        log.warning(
            "imap %s: UIDVALIDITY changed from %s to %s; reading the folder again from its "
            "first message (mail may arrive twice, none is lost)",
            key,
            saved.get("uidvalidity"),
            uidvalidity,
        )
        await self.state.save(key, {"uidvalidity": uidvalidity, "last_uid": 0})
        return 0

    async def _round(self, session: ImapSession, folder: str) -> Round:
        """Up to one batch of the messages above the last UID imported, in UID order."""
        session.take_changed()  # what is new from now on is found by this round's search
        uidvalidity = session.uidvalidity
        last = await self._last_uid(folder, uidvalidity)
        uids = (await session.uids_after(last))[: self.settings.batch]
        if not uids:
            return Round.DONE
        sizes = await session.sizes(uids)
        for uid in uids:
            where = origin(self.account.name, folder, uidvalidity, uid)
            taken = await self._take(session, uid, sizes.get(uid), where)
            if taken is Taken.REFUSED:
                return Round.RETRY
            await self.state.save(self.key(folder), {"uidvalidity": uidvalidity, "last_uid": uid})
            await self._after(session, uid, taken)
        return Round.MORE if len(uids) == self.settings.batch else Round.DONE

    async def _take(self, session: ImapSession, uid: int, size: int | None, where: str) -> Taken:
        """Hand one message over to ``ingest``, or to ``quarantine`` when it is poison."""
        limit = self.settings.max_message_bytes
        if size is not None and size > limit:
            header = await session.fetch(uid, "BODY.PEEK[HEADER]") or b""
            reason = f"message of {size} bytes exceeds EMAIL_IMAP_MAX_MESSAGE_BYTES ({limit})"
            return await self._quarantine(header, where, reason)
        raw = await session.fetch(uid)
        if raw is None:
            log.info("imap %s: expunged before it was read", where)
            return Taken.GONE
        try:
            await self.ingest(raw, where)
        except PublishError as exc:
            log.warning("imap %s: not published (%s); trying again later", where, exc)
            return Taken.REFUSED
        except Exception as exc:  # anything else is this message's fault: quarantine it
            return await self._quarantine(raw, where, f"{type(exc).__name__}: {exc}"[:1000])
        return Taken.IMPORTED

    async def _quarantine(self, data: bytes, where: str, reason: str) -> Taken:
        try:
            await self.quarantine(data, where, reason)
        except PublishError as exc:
            log.warning("imap %s: quarantine not published (%s); trying again later", where, exc)
            return Taken.REFUSED
        log.warning("imap %s: quarantined: %s", where, reason)
        return Taken.QUARANTINED

    async def _after(self, session: ImapSession, uid: int, taken: Taken) -> None:
        """What the account says to do with a message once handed over: imported mail is
        marked \\Seen and/or moved, quarantined mail moved to the quarantine folder."""
        account = self.account
        if taken is Taken.QUARANTINED and account.quarantine_folder is not None:
            await session.move(uid, account.quarantine_folder)
        elif taken is Taken.IMPORTED:
            if account.mark_seen:
                await session.mark_seen(uid)
            if account.move_to is not None:
                await session.move(uid, account.move_to)


class ImapSources:
    """A :class:`MailboxPoller` per configured account, each in a task of its own: what an
    adapter's ``start``/``stop``/``failure``/``health`` delegate to."""

    def __init__(
        self,
        settings: ImapSettings,
        state: SourceState,
        ingest: Ingest,
        quarantine: Quarantine,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.pollers = [
            MailboxPoller(account, settings, state, ingest, quarantine, ssl_context=ssl_context)
            for account in settings.accounts
        ]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Start every account's poller; returns at once (connecting happens in the tasks)."""
        await self.stop()
        self._tasks = [
            asyncio.create_task(poller.run(), name=f"imap:{poller.account.name}")
            for poller in self.pollers
        ]

    async def stop(self) -> None:
        """Cancel every poller and wait for them: what was not ingested stays unread."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel(task)

    def failure(self) -> BaseException | None:
        """What ended a poller by itself (never a server's failure: those are retried)."""
        for task in self._tasks:
            if task.done() and not task.cancelled():
                return task.exception() or RuntimeError(f"{task.get_name()} ended")
        return None

    def problems(self) -> dict[str, str]:
        """``{"account/folder": why}`` for each folder whose server is failing right now."""
        return {
            poller.key(folder): why
            for poller in self.pollers
            for folder, why in poller.problems.items()
        }

"""One IMAP connection with one folder selected, over aioimaplib: the few commands the poller
needs, with their answers parsed and every refusal raised as :class:`ImapError`.

aioimaplib (pinned) leaves STARTTLS, mailbox-name encoding and FETCH parsing to its caller,
and drops the ``* n EXISTS`` a server sends between commands; :class:`_Protocol` notes those,
so mail that arrives while a round runs is not left waiting for the next poll.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import logging
import re
import ssl
from collections.abc import Awaitable, Sequence
from typing import Any

import aioimaplib

from channels.email.imap_config import ImapAccount
from channels.email.oauth2 import AccessTokens

log = logging.getLogger(__name__)

#: Seconds a command may go without any answer (the timer restarts with each chunk received,
#: so a large message is not cut off while it arrives).
COMMAND_TIMEOUT = 30.0
_EXISTS = re.compile(rb"^\* \d+ EXISTS")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.IGNORECASE)
_FETCH = re.compile(rb"^\d+ FETCH \(", re.IGNORECASE)
_UID = re.compile(rb"\bUID (\d+)", re.IGNORECASE)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)", re.IGNORECASE)


class ImapError(Exception):
    """The server refused a command or answered something the poller cannot use."""


def mailbox(name: str) -> str:
    """A folder name as a quoted IMAP argument, in modified UTF-7 (RFC 3501 5.1.3)."""
    encoded: list[str] = []
    pending: list[str] = []

    def flush() -> None:
        if pending:
            data = base64.b64encode("".join(pending).encode("utf-16-be")).decode("ascii")
            encoded.append("&" + data.rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            encoded.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return str(aioimaplib.quoted("".join(encoded)))


class _Protocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]  # aioimaplib is untyped
    """aioimaplib's protocol, noting each ``EXISTS`` whatever command it came with, and
    answering a refused XOAUTH2's challenge so the server says NO instead of waiting."""

    changed = False

    def _untagged_response(self, line: bytes) -> Any:
        if _EXISTS.match(line):
            self.changed = True
        return super()._untagged_response(line)

    def _continuation(self, line: bytes) -> None:
        pending = self.pending_sync_command
        if pending is not None and pending.name == "AUTHENTICATE":
            # RFC 7628 3.2.2: the error comes as a challenge; an empty answer ends the exchange
            pending.append_to_resp(line)
            self.send("")
            return
        super()._continuation(line)


class _Client(aioimaplib.IMAP4):  # type: ignore[misc]  # aioimaplib is untyped
    """aioimaplib's client on :class:`_Protocol` (TLS from the start when given a context)."""

    def create_client(
        self,
        host: str,
        port: int,
        loop: asyncio.AbstractEventLoop | None,
        conn_lost_cb: Any = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        running = loop or asyncio.get_running_loop()
        self.protocol = _Protocol(running, conn_lost_cb)
        self._client_task = running.create_task(
            running.create_connection(lambda: self.protocol, host, port, ssl=ssl_context)
        )


def _ok(response: Any, what: str) -> Any:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise ImapError(f"{what}: {response.result} {text.decode('utf-8', 'replace')[:300]}")
    return response


def _records(lines: Sequence[Any]) -> list[tuple[bytes, bytes | None]]:
    """A FETCH answer's records as (the text of the record, its first literal)."""
    records: list[tuple[bytes, bytes | None]] = []
    text: list[bytes] = []
    literal: bytes | None = None
    for line in lines[:-1]:  # the last line is the tagged completion
        if isinstance(line, bytes) and _FETCH.match(line):
            if text:
                records.append((b" ".join(text), literal))
            text, literal = [line], None
        elif isinstance(line, bytes):
            text.append(line)
        elif literal is None:
            literal = bytes(line)
    if text:
        records.append((b" ".join(text), literal))
    return records


class ImapSession:
    """A logged-in connection to one account with one folder selected."""

    def __init__(self, account: ImapAccount, client: Any) -> None:
        self.account = account
        self.client = client
        self.capabilities: frozenset[str] = frozenset()
        self.uidvalidity = 0
        self._lost = asyncio.Event()

    @classmethod
    async def open(
        cls,
        account: ImapAccount,
        ssl_context: ssl.SSLContext | None = None,
        tokens: AccessTokens | None = None,
    ) -> ImapSession:
        """Connect (TLS as the account says, never falling back to clear text) and log in
        (XOAUTH2 with a token from ``tokens`` for an account with ``oauth2``)."""
        context = ssl_context or ssl.create_default_context()
        session: ImapSession

        def lost(_exc: Exception | None) -> None:
            session._lost.set()

        client = _Client(
            host=account.host,
            port=account.port,
            timeout=COMMAND_TIMEOUT,
            conn_lost_cb=lost,
            ssl_context=context if account.security == "tls" else None,
        )
        session = cls(account, client)
        try:
            await client.wait_hello_from_server()
            if account.security == "starttls":
                await session._starttls(context)
            await session._login(tokens)
            await client.protocol.capability()
            session.capabilities = frozenset(c.upper() for c in client.protocol.capabilities)
        except BaseException:
            session.close()
            raise
        return session

    async def _starttls(self, context: ssl.SSLContext) -> None:
        protocol = self.client.protocol
        if "STARTTLS" not in {c.upper() for c in protocol.capabilities}:
            raise ImapError("the server does not offer STARTTLS")
        command = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _ok(await asyncio.wait_for(protocol.execute(command), COMMAND_TIMEOUT), "STARTTLS")
        loop = asyncio.get_running_loop()
        protocol.transport = await loop.start_tls(
            protocol.transport, protocol, context, server_hostname=self.account.host
        )
        await protocol.capability()  # RFC 3501 6.2.1: what was said before TLS is forgotten

    async def _login(self, tokens: AccessTokens | None) -> None:
        account = self.account
        protocol = self.client.protocol
        if account.oauth2 is not None and tokens is None:
            raise ImapError("XOAUTH2: no access tokens for this account")
        if tokens is not None or account.oauth2_token is not None:
            # aioimaplib's xoauth2 would log the base64 of the token at DEBUG: scrub that
            if tokens is not None:
                token = await tokens.get()
            else:
                assert account.oauth2_token is not None
                token = account.oauth2_token.get_secret_value()
            sasl = f"user={account.user}\x01auth=Bearer {token}\x01\x01".encode()
            initial = base64.b64encode(sasl).decode("ascii")
            tag = protocol.new_tag()
            command = aioimaplib.Command(
                "AUTHENTICATE", tag, "XOAUTH2", initial, loop=protocol.loop
            )
            response = await asyncio.wait_for(
                protocol.execute(command, scrub=initial), COMMAND_TIMEOUT
            )
            if response.result != "OK" and tokens is not None:
                tokens.forget(token)  # revoked or expired early: the next sign-in fetches one
            _ok(response, "XOAUTH2")
            protocol.state = aioimaplib.AUTH
        else:
            assert account.password is not None  # the settings require one or the other
            password = account.password.get_secret_value()
            _ok(await self.client.login(aioimaplib.quoted(account.user), password), "LOGIN")

    def close(self) -> None:
        """Drop the connection (no LOGOUT: nothing is pending that the server must finish)."""
        waiter = getattr(self.client, "_idle_waiter", None)
        if waiter is not None:
            waiter.cancel()
        transport = getattr(self.client.protocol, "transport", None)
        if transport is not None:
            transport.close()

    async def _call(self, command: Awaitable[Any]) -> Any:
        """Await an aioimaplib command, or raise ConnectionError as soon as the connection
        drops (aioimaplib itself would wait for the answer until its timeout)."""
        if self._lost.is_set():
            if inspect.iscoroutine(command):
                command.close()
            raise ConnectionError(f"imap {self.account.name}: connection lost")
        task = asyncio.ensure_future(command)
        lost = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not task.done():
                task.cancel()
        if task.cancelled():
            raise ConnectionError(f"imap {self.account.name}: connection lost")
        return task.result()

    async def select(self, folder: str) -> int:
        """Select ``folder`` read-write; its UIDVALIDITY."""
        response = _ok(await self._call(self.client.select(mailbox(folder))), f"SELECT {folder}")
        for line in response.lines:
            found = _UIDVALIDITY.search(bytes(line))
            if found:
                self.uidvalidity = int(found.group(1))
                return self.uidvalidity
        raise ImapError(f"SELECT {folder}: no UIDVALIDITY in the answer")

    def take_changed(self) -> bool:
        """Whether the server reported new mail since the last call."""
        changed = bool(self.client.protocol.changed)
        self.client.protocol.changed = False
        return changed

    async def uids_after(self, last: int) -> list[int]:
        """UIDs above ``last``, ascending (``n:*`` also names the last message when none is
        newer, RFC 3501 6.4.8, hence the filter)."""
        search = self.client.uid_search(f"UID {last + 1}:*", charset=None)
        response = _ok(await self._call(search), "SEARCH")
        found = {
            int(word)
            for line in response.lines[:-1]
            if isinstance(line, bytes)
            for word in line.split()
            if word.isdigit()
        }
        return sorted(uid for uid in found if uid > last)

    async def sizes(self, uids: Sequence[int]) -> dict[int, int]:
        """The size of each message still there (an expunged one is absent)."""
        wanted = ",".join(str(uid) for uid in uids)
        fetch = self.client.uid("FETCH", wanted, "(UID RFC822.SIZE)")
        response = _ok(await self._call(fetch), "FETCH")
        found: dict[int, int] = {}
        for text, _ in _records(response.lines):
            uid, size = _UID.search(text), _SIZE.search(text)
            if uid and size:
                found[int(uid.group(1))] = int(size.group(1))
        return found

    async def fetch(self, uid: int, item: str = "BODY.PEEK[]") -> bytes | None:
        """One message (or part, e.g. ``BODY.PEEK[HEADER]``) without setting \\Seen; None
        when it is gone."""
        fetch = self.client.uid("FETCH", str(uid), f"(UID {item})")
        response = _ok(await self._call(fetch), "FETCH")
        for text, literal in _records(response.lines):
            found = _UID.search(text)
            if found and int(found.group(1)) == uid:
                return literal
        return None

    async def mark_seen(self, uid: int) -> None:
        """Flag ``uid`` \\Seen."""
        store = self.client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Seen)")
        _ok(await self._call(store), "STORE")

    async def move(self, uid: int, folder: str) -> None:
        """Move ``uid`` to ``folder`` (created when missing): MOVE, else COPY and delete."""
        target = mailbox(folder)
        verb = "MOVE" if "MOVE" in self.capabilities else "COPY"
        for attempt in (1, 2):
            response = await self._call(self.client.uid(verb, str(uid), target))
            if response.result == "OK":
                break
            said = b" ".join(line for line in response.lines if isinstance(line, bytes))
            if attempt == 2 or b"TRYCREATE" not in said.upper():
                _ok(response, f"MOVE to {folder}")
            _ok(await self._call(self.client.create(target)), f"CREATE {folder}")
        if verb == "COPY":
            store = self.client.uid("STORE", str(uid), "+FLAGS.SILENT", r"(\Deleted)")
            _ok(await self._call(store), "STORE")
            if "UIDPLUS" in self.capabilities:  # else left \Deleted: EXPUNGE would take more
                _ok(await self._call(self.client.uid("EXPUNGE", str(uid))), "EXPUNGE")

    async def wait(self, seconds: float) -> None:
        """Return when the server reports a change (IDLE) or after ``seconds``."""
        if "IDLE" not in self.capabilities:
            await self._call(asyncio.sleep(seconds))
            return
        while not self.client.protocol.idle_queue.empty():  # what an earlier IDLE left
            self.client.protocol.idle_queue.get_nowait()
        idle = await self._call(self.client.idle_start(timeout=seconds))
        try:
            push = self.client.wait_server_push(timeout=seconds + COMMAND_TIMEOUT)
            pushed = await self._call(push)
        except TimeoutError:
            pushed = None
        log.debug("imap %s: woken by %r", self.account.name, pushed)
        self.client.idle_done()
        _ok(await self._call(asyncio.wait_for(idle, COMMAND_TIMEOUT)), "IDLE")

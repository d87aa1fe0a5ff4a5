"""The IMAP poller against a real dovecot, its progress kept in the real PostgreSQL: each
message imported once, in order, across restarts and whoever reads the mailbox; \\Seen only
after ingest returned; poison quarantined and passed; IDLE waking it; TLS never skipped."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import ssl
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import ValidationError

from channels.base import FileBlobStore, PublishError
from channels.email import EmailAdapter
from channels.email.imap import ImapSources, MailboxPoller, origin
from channels.email.imap_client import ImapError, mailbox
from channels.email.imap_config import ImapAccount, ImapSettings
from channels.email.oauth2 import TokenRefused
from schemas.topics import INTERACTIONS
from services.api.source_state import PgSourceState
from services.stack.ports import free_port, wait_for_port
from tests.channels.email.dovecot import CLIENT_ID, CLIENT_SECRET, Dovecot
from tests.channels.email.support import of_message
from tests.channels.email.support import settings as email_settings
from tests.support import (
    announce_period_keys,
    consume,
    eventually,
    read_all,
    sealing_publisher,
    start_component,
    stop_process,
    unique,
)

SEEN = r"\Seen"
#: IDLE tests poll only every 29 minutes: what arrives sooner came by IDLE.
NEVER = 29 * 60.0


@pytest.fixture(scope="module")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dovecot]:
    """One dovecot for the module; each test makes users of its own."""
    server = Dovecot(tmp_path_factory.mktemp("dovecot"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def state(pool: asyncpg.Pool) -> PgSourceState:
    """The hub's state store, under an adapter name of this test's own."""
    return PgSourceState(pool, unique("imap"))


def message(subject: str, text: str = "Hello, my router keeps dropping.") -> bytes:
    """A plain message with a fresh Message-ID, CRLF-terminated as IMAP stores it."""
    msg = EmailMessage()
    msg["From"] = "alice@example.org"
    msg["To"] = "support@acme.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{unique('m')}@example.org>"
    msg.set_content(text)
    return msg.as_bytes().replace(b"\n", b"\r\n")


def account(dovecot: Dovecot, user: str, **fields: Any) -> ImapAccount:
    """An account on the test server, in clear text over loopback unless told otherwise."""
    values: dict[str, Any] = {
        "name": unique("acct"),
        "host": "127.0.0.1",
        "port": dovecot.port,
        "security": "none",
        "user": user,
        "password": dovecot.passwords[user],
    }
    values.update(fields)
    return ImapAccount(**values)


def settings(**fields: Any) -> ImapSettings:
    return ImapSettings(**fields)


class Hub:
    """The poller's ingest and quarantine: records what it was handed, refuses on demand,
    and notes the message's flags at the moment it is handed over."""

    def __init__(self, dovecot: Dovecot | None = None, user: str | None = None) -> None:
        self.dovecot, self.user = dovecot, user
        self.ingested: list[tuple[bytes, str]] = []
        self.quarantined: list[tuple[bytes, str, str]] = []
        self.refuse: dict[bytes, Exception] = {}
        self.flags_seen: dict[str, set[str]] = {}
        self.calls = 0
        self.arrived = asyncio.Event()

    async def ingest(self, raw: bytes, where: str) -> None:
        self.calls += 1
        if self.dovecot is not None and self.user is not None:
            uid = int(where.rsplit("/", 1)[1])
            self.flags_seen[where] = await self.dovecot.flags(self.user, uid)
        for marker, error in self.refuse.items():
            if marker in raw:
                raise error
        self.ingested.append((raw, where))
        self.arrived.set()

    async def quarantine(self, raw: bytes, where: str, reason: str) -> None:
        self.quarantined.append((raw, where, reason))

    def raws(self) -> list[bytes]:
        return [raw for raw, _ in self.ingested]

    async def count(self, n: int) -> bool:
        return len(self.ingested) >= n


def poller(imap: ImapAccount, state: PgSourceState, hub: Hub, **fields: Any) -> MailboxPoller:
    return MailboxPoller(imap, settings(**fields), state, hub.ingest, hub.quarantine)


async def test_new_mail_is_ingested_once_in_order_then_marked_seen(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    first, second = message("one"), message("two")
    uid1 = await dovecot.append(user, first)
    uid2 = await dovecot.append(user, second)
    validity = await dovecot.uidvalidity(user, "INBOX")
    hub = Hub()

    await poller(imap, state, hub).poll_once()
    assert hub.ingested == [
        (first, origin(imap.name, "INBOX", validity, uid1)),
        (second, origin(imap.name, "INBOX", validity, uid2)),
    ]
    assert SEEN in await dovecot.flags(user, uid1)
    assert SEEN in await dovecot.flags(user, uid2)
    assert await state.load(f"{imap.name}/INBOX") == {"uidvalidity": validity, "last_uid": uid2}

    await poller(imap, state, hub).poll_once()
    assert len(hub.ingested) == 2, "nothing is fetched twice"


async def test_a_restart_fetches_nothing_twice_and_misses_what_arrived_meanwhile(
    dovecot: Dovecot, pool: asyncpg.Pool
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user, mark_seen=False)  # \Seen is no record of progress
    adapter = unique("imap")
    before = [message(f"before {n}") for n in range(3)]
    for raw in before:
        await dovecot.append(user, raw)
    hub = Hub()
    await poller(imap, PgSourceState(pool, adapter), hub, batch=2).poll_once()
    assert hub.raws() == before, "batches of 2 until nothing is left"

    # the poller is down (a new state object, as a new process would make); mail goes on
    while_down = [message(f"meanwhile {n}") for n in range(2)]
    for raw in while_down:
        await dovecot.append(user, raw)
    hub_after = Hub()
    await poller(imap, PgSourceState(pool, adapter), hub_after).poll_once()
    assert hub_after.raws() == while_down
    await poller(imap, PgSourceState(pool, adapter), hub_after).poll_once()
    assert hub_after.raws() == while_down


async def test_mail_a_person_read_first_is_still_imported(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    read_by_a_person = message("already read")
    uid = await dovecot.append(user, read_by_a_person)
    await dovecot.mark_seen(user, uid)
    flagged_on_arrival = message("arrived flagged")
    await dovecot.append(user, flagged_on_arrival, flags=SEEN)
    hub = Hub()
    await poller(imap, state, hub).poll_once()
    assert hub.raws() == [read_by_a_person, flagged_on_arrival]


async def test_seen_is_set_only_after_ingest_returned_and_a_broker_failure_retries(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    first, second = message("first"), message("second")
    uid1 = await dovecot.append(user, first)
    uid2 = await dovecot.append(user, second)
    hub = Hub(dovecot, user)
    hub.refuse[b"Subject: first"] = PublishError("broker down")

    await poller(imap, state, hub).poll_once()
    assert hub.ingested == [] and hub.calls == 1, "the round stops at the refused message"
    assert SEEN not in await dovecot.flags(user, uid1)
    assert SEEN not in await dovecot.flags(user, uid2)
    assert await state.load(f"{imap.name}/INBOX") is None
    assert hub.quarantined == [], "a broker failure is no poison"

    hub.refuse.clear()
    await poller(imap, state, hub).poll_once()
    assert hub.raws() == [first, second]
    assert all(SEEN not in flags for flags in hub.flags_seen.values()), hub.flags_seen
    assert SEEN in await dovecot.flags(user, uid1)
    assert SEEN in await dovecot.flags(user, uid2)


async def test_poison_is_quarantined_with_its_bytes_set_aside_and_never_fetched_again(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user, quarantine_folder="Quarantine")
    good, poison, after = message("good"), message("poison"), message("after")
    await dovecot.append(user, good)
    poison_uid = await dovecot.append(user, poison)
    after_uid = await dovecot.append(user, after)
    validity = await dovecot.uidvalidity(user, "INBOX")
    hub = Hub()
    hub.refuse[b"Subject: poison"] = ValueError("no sender")

    await poller(imap, state, hub).poll_once()
    assert hub.raws() == [good, after]
    assert hub.quarantined == [
        (poison, origin(imap.name, "INBOX", validity, poison_uid), "ValueError: no sender")
    ]
    assert poison_uid not in await dovecot.uids(user, "INBOX")
    moved = await dovecot.uids(user, "Quarantine")
    assert len(moved) == 1 and SEEN not in await dovecot.flags(user, moved[0], "Quarantine")
    assert SEEN in await dovecot.flags(user, after_uid)

    calls = hub.calls
    await poller(imap, state, hub).poll_once()
    assert hub.calls == calls and len(hub.quarantined) == 1


async def test_poison_stays_put_without_a_quarantine_folder_and_is_not_fetched_again(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    poison, after = message("poison"), message("after")
    poison_uid = await dovecot.append(user, poison)
    await dovecot.append(user, after)
    hub = Hub()
    hub.refuse[b"Subject: poison"] = RuntimeError("bug")
    await poller(imap, state, hub).poll_once()
    await poller(imap, state, hub).poll_once()
    assert hub.raws() == [after]
    assert [q[0] for q in hub.quarantined] == [poison]
    assert poison_uid in await dovecot.uids(user, "INBOX")
    assert SEEN not in await dovecot.flags(user, poison_uid), "left for a person to see"


async def test_an_oversized_message_is_quarantined_with_its_header_never_fetched_whole(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    huge = message("huge", "x" * 70 + "\r\n" + "y" * 4000)
    small = message("small")
    await dovecot.append(user, huge)
    await dovecot.append(user, small)
    hub = Hub()
    await poller(imap, state, hub, max_message_bytes=2048).poll_once()
    assert hub.raws() == [small]
    [(data, _, reason)] = hub.quarantined
    header = huge.split(b"\r\n\r\n", 1)[0]
    assert data.startswith(header) and b"yyyy" not in data
    assert f"message of {len(huge)} bytes" in reason and "(2048)" in reason


async def test_a_new_uidvalidity_reads_the_folder_again(
    dovecot: Dovecot, state: PgSourceState, caplog: pytest.LogCaptureFixture
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user, folders=["Support"])
    for n in range(2):
        await dovecot.append(user, message(f"old {n}"), folder="Support")
    hub = Hub()
    await poller(imap, state, hub).poll_once()
    old_validity = await dovecot.uidvalidity(user, "Support")
    assert len(hub.ingested) == 2

    # the folder is recreated: UIDs start again at 1, below the last one imported
    await dovecot.delete(user, "Support")
    await dovecot.create(user, "Support")
    recreated = message("in the new folder")
    uid = await dovecot.append(user, recreated, folder="Support")
    validity = await dovecot.uidvalidity(user, "Support")
    assert validity != old_validity and uid == 1
    with caplog.at_level(logging.WARNING, logger="channels.email.imap"):
        await poller(imap, state, hub).poll_once()
    assert hub.ingested[2:] == [(recreated, origin(imap.name, "Support", validity, uid))]
    assert "UIDVALIDITY changed" in caplog.text
    assert await state.load(f"{imap.name}/Support") == {"uidvalidity": validity, "last_uid": 1}


async def test_idle_wakes_the_poller_long_before_its_poll_interval(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    hub = Hub()
    first = message("before the start")
    await dovecot.append(user, first)
    sources = ImapSources(
        ImapSettings(accounts=[imap], poll_seconds=NEVER), state, hub.ingest, hub.quarantine
    )
    await sources.start()
    try:
        await eventually(lambda: hub.count(1))
        for n in range(3):  # each while the poller waits in IDLE (or finishes a round)
            await dovecot.append(user, message(f"pushed {n}"))
            # a liveness bound, not a timing assertion: without IDLE this takes 29 minutes
            await eventually(functools.partial(hub.count, n + 2), timeout=60)
        assert sources.failure() is None and sources.problems() == {}
    finally:
        await sources.stop()
    assert len(hub.ingested) == 4


async def test_a_server_restart_is_survived_by_reconnecting(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    hub = Hub()
    await dovecot.append(user, message("before the restart"))
    sources = ImapSources(
        ImapSettings(accounts=[imap], poll_seconds=NEVER), state, hub.ingest, hub.quarantine
    )
    await sources.start()
    try:
        await eventually(lambda: hub.count(1))
        await asyncio.to_thread(dovecot.restart)  # the poller was waiting in IDLE
        after = message("after the restart")
        await dovecot.append(user, after)
        await eventually(lambda: hub.count(2), timeout=60)
        assert hub.raws()[1] == after
        assert sources.failure() is None
    finally:
        await sources.stop()


async def test_several_accounts_and_folders_each_on_their_own(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    alice, bob = dovecot.user(), dovecot.user()
    await dovecot.create(alice, "Sales")
    first = account(dovecot, alice, folders=["INBOX", "Sales"], move_to="Archive")
    second = account(dovecot, bob)
    hub = Hub()
    sources = ImapSources(
        ImapSettings(accounts=[first, second], poll_seconds=NEVER),
        state,
        hub.ingest,
        hub.quarantine,
    )
    await sources.start()
    try:
        await dovecot.append(alice, message("alice inbox"))
        await dovecot.append(alice, message("alice sales"), folder="Sales")
        await dovecot.append(bob, message("bob inbox"))
        await eventually(lambda: hub.count(3), timeout=60)

        async def handled() -> bool:
            """alice's mail moved to Archive, \\Seen; bob's stays in INBOX, \\Seen (the
            poller does this just after ingest returns, so it is waited for)."""
            if await dovecot.uids(alice, "INBOX") or await dovecot.uids(alice, "Sales"):
                return False
            archived = await dovecot.uids(alice, "Archive")
            kept = await dovecot.uids(bob, "INBOX")
            flags = [await dovecot.flags(alice, uid, "Archive") for uid in archived]
            flags += [await dovecot.flags(bob, uid) for uid in kept]
            return len(archived) == 2 and len(kept) == 1 and all(SEEN in f for f in flags)

        await eventually(handled, timeout=30)
        assert sources.failure() is None
    finally:
        await sources.stop()
    origins = sorted(where.rsplit("/", 2)[0] for _, where in hub.ingested)
    assert origins == sorted(
        [f"imap:{first.name}/INBOX", f"imap:{first.name}/Sales", f"imap:{second.name}/INBOX"]
    )


async def test_a_folder_name_beyond_ascii_is_sent_in_modified_utf7(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    assert mailbox("~peter/mail/台北/日本語") == '"~peter/mail/&U,BTFw-/&ZeVnLIqe-"'  # RFC 3501
    assert mailbox('Entrée & "co"') == '"Entr&AOk-e &- \\"co\\""'
    user = dovecot.user()
    raw = message("réclamation")
    await dovecot.append(user, raw, folder=mailbox("Réclamations"))
    hub = Hub()
    await poller(account(dovecot, user, folders=["Réclamations"]), state, hub).poll_once()
    assert hub.raws() == [raw]


async def test_implicit_tls_and_starttls_with_a_trusted_certificate(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    raw = message("over tls")
    await dovecot.append(user, raw)
    tls = account(dovecot, user, host="localhost", port=dovecot.tls_port, security="tls")
    starttls = account(dovecot, user, host="localhost", security="starttls")
    for imap in (tls, starttls):
        hub = Hub()
        poll = MailboxPoller(
            imap,
            settings(),
            state,
            hub.ingest,
            hub.quarantine,
            ssl_context=dovecot.ssl_context(),
        )
        await poll.poll_once()
        assert hub.raws() == [raw], imap.security


async def test_an_untrusted_certificate_is_refused_never_skipped(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    await dovecot.append(user, message("not for an impostor"))
    for security, port in (("tls", dovecot.tls_port), ("starttls", dovecot.port)):
        imap = account(dovecot, user, host="localhost", port=port, security=security)
        hub = Hub()
        with pytest.raises(ssl.SSLCertVerificationError):
            await poller(imap, state, hub).poll_once()
        assert hub.calls == 0


async def test_xoauth2_signs_in_with_an_access_token_and_a_wrong_one_is_refused(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    raw = message("for an oauth client")
    await dovecot.append(user, raw)
    hub = Hub()
    with_token = account(dovecot, user, password=None, oauth2_token=dovecot.tokens[user])
    await poller(with_token, state, hub).poll_once()
    assert hub.raws() == [raw]
    expired = account(dovecot, user, password=None, oauth2_token="ya29.expired")
    with pytest.raises(ImapError, match="XOAUTH2"):
        await poller(expired, state, Hub()).poll_once()


def refreshing(dovecot: Dovecot, user: str, **oauth2: Any) -> ImapAccount:
    """An account signing in by XOAUTH2 with tokens from the test token endpoint."""
    fields = {
        "token_url": dovecot.token_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": dovecot.refresh_tokens[user],
        "scope": "https://outlook.office.com/IMAP.AccessAsUser.All offline_access",
    }
    fields.update(oauth2)
    return account(dovecot, user, password=None, oauth2=fields)


async def test_xoauth2_tokens_are_fetched_kept_shared_and_refetched_once_refused(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    first, second, third = message("one"), message("two"), message("three")
    await dovecot.append(user, first)
    hub = Hub()
    imap = refreshing(dovecot, user)
    mailbox = poller(imap, state, hub)
    before = len(dovecot.token_server.requests)
    await mailbox.poll_once()
    await dovecot.append(user, second)
    await mailbox.poll_once()  # a second connection, the same token
    assert hub.raws() == [first, second]
    asked = dovecot.token_server.requests[before:]
    assert len(asked) == 1 and mailbox.tokens is not None and mailbox.tokens.fetched == 1
    assert asked[0]["grant_type"] == "refresh_token"
    assert asked[0]["refresh_token"] == dovecot.refresh_tokens[user]
    assert asked[0]["scope"].endswith("offline_access")

    # the provider revokes it: that sign-in fails, the next one fetches a new token with the
    # refresh token the endpoint rotated to
    token = mailbox.tokens._token
    assert token is not None
    dovecot.revoke(token)
    await dovecot.append(user, third)
    with pytest.raises(ImapError, match="XOAUTH2"):
        await mailbox.poll_once()
    await mailbox.poll_once()
    assert hub.raws() == [first, second, third]
    again = dovecot.token_server.requests[before + 1 :]
    assert len(again) == 1 and again[0]["refresh_token"] != dovecot.refresh_tokens[user]


async def test_a_token_expiring_within_a_minute_is_not_used(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    dovecot.token_server.lifetime = 30  # less than the minute kept in hand
    try:
        mailbox = poller(refreshing(dovecot, user), state, Hub())
        await mailbox.poll_once()
        await mailbox.poll_once()
    finally:
        dovecot.token_server.lifetime = 3599
    assert mailbox.tokens is not None and mailbox.tokens.fetched == 2


async def test_a_refused_refresh_is_reported_without_secrets_and_retried(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = refreshing(dovecot, user, client_secret="not-the-secret")
    with pytest.raises(TokenRefused, match="401 invalid_client"):
        await poller(imap, state, Hub()).poll_once()
    unknown = refreshing(dovecot, user, refresh_token="1//revoked")
    sources = ImapSources(ImapSettings(accounts=[unknown]), state, Hub().ingest, Hub().quarantine)
    await sources.start()
    try:
        problems = await eventually(lambda: _problems(sources))
        why = problems[f"{unknown.name}/INBOX"]
        assert why == "TokenRefused: token endpoint answered 400 invalid_grant"
        assert sources.failure() is None
    finally:
        await sources.stop()


def test_oauth2_settings_are_checked() -> None:
    base = {"name": "m365", "host": "outlook.office365.com", "user": "support@acme.example"}
    refresh = {"client_id": "c", "refresh_token": "r"}
    good = ImapAccount(
        **base,
        oauth2={**refresh, "token_url": "https://login.microsoftonline.com/t/oauth2/v2.0/token"},
    )
    assert good.oauth2 is not None and good.oauth2.client_secret is None
    with pytest.raises(ValidationError, match="https"):
        ImapAccount(**base, oauth2={**refresh, "token_url": "http://tokens.example/token"})
    with pytest.raises(ValidationError, match="one of password, oauth2 or oauth2_token"):
        ImapAccount(
            **base, password="p", oauth2={**refresh, "token_url": "https://t.example/token"}
        )
    with pytest.raises(ValidationError, match="one of password"):
        ImapAccount(**base)


async def test_a_refused_login_is_reported_and_retried_not_fatal(
    dovecot: Dovecot, state: PgSourceState
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user, password="wrong")
    hub = Hub()
    sources = ImapSources(ImapSettings(accounts=[imap]), state, hub.ingest, hub.quarantine)
    await sources.start()
    try:
        problems = await eventually(lambda: _problems(sources))
        assert problems[f"{imap.name}/INBOX"].startswith("ImapError: LOGIN: NO")
        assert sources.failure() is None
    finally:
        await sources.stop()


async def _problems(sources: ImapSources) -> dict[str, str]:
    return sources.problems()


def test_the_settings_refuse_what_cannot_work(tmp_path: Path) -> None:
    base = {"name": "support", "host": "imap.example.org", "user": "u", "password": "secret-pw"}
    assert ImapAccount(**base).port == 993
    assert ImapAccount(**{**base, "security": "starttls"}).port == 143
    wrong: dict[str, Any]
    for wrong in (
        {"security": "none"},  # a password in clear over the network
        {"oauth2_token": "token"},  # both credentials
        {"password": None},  # none
        {"name": "a/b"},  # the state key's separator
        {"move_to": "INBOX"},  # imported mail would come back
        {"quarantine_folder": "INBOX"},
        {"folders": []},
        {"folders": ["INBOX", "INBOX"]},
        {"folders": ["bad\r\nLOGOUT"]},
    ):
        with pytest.raises(ValidationError) as error:
            ImapAccount(**{**base, **wrong})
        assert "secret-pw" not in str(error.value)
    assert ImapAccount(**{**base, "host": "127.0.0.1", "security": "none"}).port == 143
    with pytest.raises(ValidationError):
        ImapSettings(accounts=[base, base])
    with pytest.raises(ValidationError):
        ImapSettings(poll_seconds=30 * 60)  # RFC 2177: IDLE again within 29 minutes
    parsed = ImapSettings.model_validate(
        {"EMAIL_IMAP_ACCOUNTS": [{**base, "folders": ["INBOX", "Sales"]}]}
    )
    assert parsed.accounts[0].folders == ("INBOX", "Sales")
    assert (parsed.poll_seconds, parsed.batch, parsed.max_message_bytes) == (60, 50, 26214400)


async def test_the_adapter_publishes_polled_mail_and_a_restart_publishes_nothing_twice(
    dovecot: Dovecot, stack: Any, pool: asyncpg.Pool, producer: Any, tmp_path: Path
) -> None:
    user = dovecot.user()
    imap = account(dovecot, user)
    first = message("polled by the hub")
    first_id = first.split(b"Message-ID: <")[1].split(b">")[0].decode()
    await dovecot.append(user, first)
    adapter_state = PgSourceState(pool, unique("email"))
    publisher = await sealing_publisher(producer, stack.database_url)

    async def run_adapter() -> EmailAdapter:
        adapter = EmailAdapter(email_settings(tmp_path), imap=settings(accounts=[imap]))
        adapter.attach(publisher, blobs=FileBlobStore(tmp_path / "blobs"), state=adapter_state)
        await adapter.start()
        return adapter

    adapter = await run_adapter()
    try:
        records = await consume(
            stack.bootstrap, INTERACTIONS.name, lambda rs: bool(of_message(rs, first_id))
        )
    finally:
        await adapter.stop()
    later = message("arrived while the hub was down")
    later_id = later.split(b"Message-ID: <")[1].split(b">")[0].decode()
    await dovecot.append(user, later)
    adapter = await run_adapter()
    try:
        records = await consume(
            stack.bootstrap, INTERACTIONS.name, lambda rs: bool(of_message(rs, later_id))
        )
        assert adapter.failure() is None
    finally:
        await adapter.stop()
    records = await read_all(stack.bootstrap, INTERACTIONS.name)
    assert len(of_message(records, first_id)) == 1  # published once across the restart
    assert len(of_message(records, later_id)) == 1


async def test_omnihub_run_channel_email_polls_a_mailbox(
    dovecot: Dovecot, stack: Any, tmp_path: Path, component_env: dict[str, str]
) -> None:
    # a channel process learns the period keys from their topic, as the hub announces them
    await announce_period_keys(stack.bootstrap, stack.database_url)
    user = dovecot.user()
    raw = message("polled by a channel process")
    mid = raw.split(b"Message-ID: <")[1].split(b">")[0].decode()
    await dovecot.append(user, raw)
    http = free_port()
    env = dict(
        component_env,
        OMNIHUB_HTTP_PORT=str(http),
        OMNIHUB_DATA_DIR=str(tmp_path),
        EMAIL_IMAP_ACCOUNTS=json.dumps(
            [
                {
                    "name": unique("proc"),
                    "host": "127.0.0.1",
                    "port": dovecot.port,
                    "security": "none",
                    "user": user,
                    "password": dovecot.passwords[user],
                }
            ]
        ),
    )
    assert os.environ.get("OMNIHUB_SMTP_PORT") == "0"  # the suite's: no clash with 2525
    proc = start_component("channel email", env, tmp_path / "channel.log")
    try:
        wait_for_port("127.0.0.1", http, 30, alive=lambda: proc.poll() is None)
        records = await consume(
            stack.bootstrap, INTERACTIONS.name, lambda rs: bool(of_message(rs, mid)), timeout=60
        )
        assert len(of_message(records, mid)) == 1
    finally:
        stop_process(proc)

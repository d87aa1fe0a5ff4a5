"""The web chat channel's parts without a server: site settings, visitor ids, signed-in
users' claims, visitor text, and the conversation log's numbering under concurrency."""

from __future__ import annotations

import asyncio
import sys
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from pydantic import ValidationError

from channels.base.scan import CommandScanner, ScanUnavailable
from channels.webchat.adapter import plain_text
from channels.webchat.config import Site, WebchatSettings
from channels.webchat.limits import Buckets
from channels.webchat.visitors import ClaimRefused, VisitorIds, verified_claim
from services.conversation_log import LogUnavailable, PgConversationLog, log_on
from tests.channels.webchat.eicar_scanner import EICAR
from tests.channels.webchat.support import SCANNER, SECRET, SITES, claim
from tests.support import unique


def test_sites_need_real_origins_and_long_secrets() -> None:
    base = {"id": "shop", "name": "Shop"}
    assert Site(**base, origins=["https://Shop.Example"]).origins == ("https://shop.example",)
    assert Site(**base, origins=["http://127.0.0.1:8080"]).origins
    for origin in ("http://shop.example", "https://shop.example/path", "shop.example"):
        with pytest.raises(ValidationError):
            Site(**base, origins=[origin])
    with pytest.raises(ValidationError, match="32"):
        Site(**base, origins=["https://shop.example"], secret="short")
    with pytest.raises(ValidationError, match="share an id"):
        WebchatSettings.model_validate({"WEBCHAT_SITES": [SITES[0], SITES[0]]})


def test_visitor_ids_are_the_sites_own_and_cannot_be_edited() -> None:
    ids = VisitorIds(b"k" * 40)
    token, issued = ids.issue("acme")
    visitor = ids.visitor(token, "acme")
    assert isinstance(visitor, uuid.UUID) and visitor == issued
    assert ids.visitor(token, "other") is None
    assert VisitorIds(b"j" * 40).visitor(token, "acme") is None, "another key's id"
    site, hexed, mac = token.split(".")
    assert ids.visitor(f"{site}.{uuid.uuid4().hex}.{mac}", "acme") is None
    tampered = mac[:-1] + ("B" if mac.endswith("A") else "A")
    assert ids.visitor(f"{site}.{hexed}.{tampered}", "acme") is None


def test_claims_are_checked_for_signature_expiry_and_shape() -> None:
    site = Site(id="acme", name="Acme", origins=["https://shop.example"], secret=SECRET)
    now = datetime.now(UTC)
    good = verified_claim(site, claim("u7", "Jane@Example.org"), now)
    assert (good.user_id, good.email) == ("u7", "jane@example.org")
    refused = [
        {**claim("u7"), "id": "u8"},
        claim("u7", ttl=-1),
        claim("u7", ttl=2 * 24 * 3600),
        {**claim("u7"), "expires": "soon"},
        {"id": "u7"},
        "u7",
    ]
    for raw in refused:
        with pytest.raises(ClaimRefused):
            verified_claim(site, raw, now)
    unsigned = Site(id="open", name="Open", origins=["https://shop.example"])
    with pytest.raises(ClaimRefused, match="no secret"):
        verified_claim(unsigned, claim("u7"), now)


def test_visitor_text_is_kept_as_text() -> None:
    assert plain_text("<img src=x onerror=alert(1)>hi <b>there</b>") == "hi there"
    assert plain_text("1 < 2 && 3 > 2") == "1 < 2 && 3 > 2"
    assert plain_text("<script>steal()</script>  ok ") == "ok"


async def test_the_log_numbers_each_entry_once_however_many_append_it(
    pool: asyncpg.Pool,
) -> None:
    log = log_on(pool, "webchat-test")
    conversation = unique("conv")
    ids = [uuid.uuid4() for _ in range(20)]
    seqs = await asyncio.gather(
        *(log.append(conversation, i, {"n": n}) for n, i in enumerate(ids)),
        *(log.append(conversation, i, {"n": n}) for n, i in enumerate(ids)),
    )
    first, second = seqs[:20], seqs[20:]
    assert first == second, "a retry gets the number the entry already has"
    assert len(set(first)) == 20
    entries = await log.since(conversation, 0, 100)
    assert [seq for seq, _ in entries] == sorted(first)
    assert await log.since(conversation, max(first), 100) == []
    assert len(await log.since(conversation, 0, 5)) == 5


def test_buckets_allow_a_burst_then_one_per_interval_per_key() -> None:
    buckets = Buckets(burst=3, every=2.0)
    assert [buckets.take("v1", "10.0.0.1", now=100.0) for _ in range(3)] == [0, 0, 0]
    assert buckets.take("v1", "10.0.0.1", now=100.0) == pytest.approx(2.0)
    assert buckets.take("v2", "10.0.0.1", now=100.0) == 0, "another visitor behind the NAT"
    assert buckets.take("v1", "10.0.0.2", now=100.0) == 0, "the same visitor elsewhere"
    assert buckets.take("v1", "10.0.0.1", now=101.0) == pytest.approx(1.0)
    assert buckets.take("v1", "10.0.0.1", now=102.0) == 0
    assert buckets.take("v1", "10.0.0.1", now=1000.0) == 0, "refilled, never beyond the burst"
    assert buckets.take("v1", "10.0.0.1", now=1000.0) == 0
    assert buckets.take("v1", "10.0.0.1", now=1000.0) == 0
    assert buckets.take("v1", "10.0.0.1", now=1000.0) > 0


async def test_appends_that_cannot_be_written_fail_each_waiting_caller() -> None:
    async def unreachable() -> asyncpg.Pool:
        raise ConnectionRefusedError("PostgreSQL is down")

    log = PgConversationLog(unreachable, "webchat-test")
    failed = await asyncio.gather(
        *(log.append("c", uuid.uuid4(), {"n": n}) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(f, LogUnavailable) for f in failed), failed
    assert isinstance(failed[0], OSError), "callers treat it as a transient failure"


async def test_the_scan_hook_keeps_clamscans_convention_and_fails_closed() -> None:
    scanner = CommandScanner(SCANNER)
    assert await scanner.infected(b"%PDF-1.4 a clean file") is None
    assert await scanner.infected(b"%PDF-1.4\n" + EICAR) == "stdin: Eicar-Test-Signature FOUND"
    for broken in (
        CommandScanner(f"{SCANNER} --fail"),  # an error status
        CommandScanner("/nonexistent/clamdscan -"),  # not installed
        CommandScanner(f"{sys.executable} -c 'import time; time.sleep(30)'", timeout=0.5),
    ):
        with pytest.raises(ScanUnavailable):
            await broken.infected(b"%PDF-1.4")

"""Sealed record values (schemas/sealing.py): what opens, what does not, and the headers."""

from __future__ import annotations

from typing import Any

import pytest

from schemas.cloudevents import ce_headers, header_map
from schemas.sealing import (
    KEY_ID_HEADER,
    SCHEME_HEADER,
    SEALED_CONTENT_TYPE,
    PeriodSealer,
    Seal,
    SealError,
    new_key,
    new_period_keypair,
    open_sealed,
    period_data_key,
    seal,
    without_content_type,
)

PLAIN = '{"text": "Ma commande n\'est pas arrivée", "phone": "+33612345678"}'.encode()


def test_customer_seal_round_trip_and_hides_the_plaintext() -> None:
    key = new_key()
    value = seal(key, "k1", PLAIN)
    assert b"commande" not in value and b"+3361" not in value
    assert open_sealed(key, "k1", value) == PLAIN
    assert seal(key, "k1", PLAIN) != value  # a fresh nonce every time


@pytest.mark.parametrize("case", ["other key", "other key id", "flipped byte", "truncated"])
def test_a_sealed_value_opens_only_as_it_was_sealed(case: str) -> None:
    key = new_key()
    value = seal(key, "k1", PLAIN)
    with pytest.raises(SealError):
        if case == "other key":
            open_sealed(new_key(), "k1", value)
        elif case == "other key id":
            open_sealed(key, "k2", value)
        elif case == "flipped byte":
            open_sealed(key, "k1", value[:20] + bytes([value[20] ^ 1]) + value[21:])
        else:
            open_sealed(key, "k1", value[:20])


def test_period_seal_opens_with_the_private_key_only() -> None:
    private, public = new_period_keypair()
    sender = PeriodSealer.for_public_key("2026-12-07", public)
    value, used = sender.seal(PLAIN)
    assert used == Seal("period", "2026-12-07", sender.ephemeral)
    data_key = period_data_key(private, "2026-12-07", sender.ephemeral)
    assert open_sealed(data_key, "2026-12-07", value) == PLAIN
    other_private, _ = new_period_keypair()
    with pytest.raises(SealError):
        open_sealed(
            period_data_key(other_private, "2026-12-07", sender.ephemeral), "2026-12-07", value
        )
    # another sender of the same period has its own data key
    assert PeriodSealer.for_public_key("2026-12-07", public).data_key != sender.data_key


def test_headers_name_the_seal_and_keep_the_cloudevents_ones() -> None:
    base = ce_headers(event_id="e1", ce_type="com.omnihub.routed.v1", source="s")
    headers = without_content_type(base) + Seal("customer", "k1").headers()
    decoded = header_map(headers)
    assert decoded["ce_id"] == "e1" and decoded["content-type"] == SEALED_CONTENT_TYPE
    assert Seal.of(decoded) == Seal("customer", "k1")
    assert Seal.of(header_map(base)) is None  # a plain JSON record is not sealed


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": SEALED_CONTENT_TYPE},
        {"content-type": SEALED_CONTENT_TYPE, SCHEME_HEADER: "rot13", KEY_ID_HEADER: "k"},
        {
            "content-type": SEALED_CONTENT_TYPE,
            SCHEME_HEADER: "period",
            KEY_ID_HEADER: "k",
        },
    ],
)
def test_incomplete_seal_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SealError):
        Seal.of(headers)


def test_a_bad_ephemeral_key_is_a_seal_error() -> None:
    private, _ = new_period_keypair()
    with pytest.raises(SealError):
        period_data_key(private, "2026-12-07", "not base64!")


def test_a_command_whose_key_is_gone_is_dead_lettered_with_the_reason() -> None:
    from types import SimpleNamespace

    from schemas import OutboundCommand
    from schemas.cloudevents import ERROR_HEADER
    from services.keys.reader import Unopened
    from services.worker.decode import decode_batch

    message = SimpleNamespace(
        topic="omnihub.outbound.v1", partition=0, offset=7, key=b"c", value=b"\x00sealed",
        headers=[("content-type", SEALED_CONTENT_TYPE.encode())],
    )  # fmt: skip
    gone = Unopened("sealed with key k, which no longer exists (its customer was erased)", True)
    decoded = decode_batch([SimpleNamespace(message=message)], OutboundCommand, "dispatch", [gone])
    assert decoded.models == []
    [dead] = decoded.dead
    assert dead.value == b"\x00sealed"  # kept as it was: still sealed
    assert "its customer was erased" in header_map(dead.headers)[ERROR_HEADER]


async def test_a_reader_trusts_a_key_only_as_long_as_the_sealing_side_does(
    pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time
    import uuid

    from services.bus.records import Record
    from services.keys import reader as reader_module
    from services.keys.reader import SealedReader
    from services.keys.seal import sealed
    from services.keys.store import CACHE_SECONDS, CustomerKeys, delete_for

    customer = uuid.uuid4()  # unknown to `customers`: it still gets a key, as imports do
    key = (await CustomerKeys().for_customers(pool, [customer]))[customer]
    plain = Record("t", None, b'{"text": "hello"}', [("content-type", b"application/json")])
    [record] = sealed([plain], key)
    reader = SealedReader()
    assert await reader.values(pool, [record]) == [plain.value]
    async with pool.acquire() as conn:
        await delete_for(conn, [customer])
    assert await reader.values(pool, [record]) == [plain.value]  # cached, as documented
    later = time.monotonic() + CACHE_SECONDS + 1
    monkeypatch.setattr(reader_module.time, "monotonic", lambda: later)
    assert await reader.values(pool, [record]) == [None]  # erased: gone once the cache lapses

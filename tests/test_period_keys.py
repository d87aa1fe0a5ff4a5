"""Period keys: raw records sealed with the day's public key, readable by the hub until the
day's private key is deleted (OMNIHUB_RAW_RECORD_DAYS), against real PostgreSQL and Tansu."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from channels.base import InboundRequest, PublishError
from schemas.cloudevents import ERROR_HEADER, header_map
from schemas.events import utcnow
from schemas.sealing import KEY_ID_HEADER, SCHEME_HEADER, SEALED_CONTENT_TYPE
from schemas.topics import DEADLETTER, PERIOD_KEYS
from services.bus.producer import KafkaPublisher, Producer
from services.bus.records import Record
from services.keys import periods
from services.keys.periods import (
    PeriodKeeper,
    PeriodKeyFollower,
    PeriodKeyring,
    ensure_keys,
    shred_expired,
)
from services.keys.reader import SealedReader, Unopened
from tests.support import consume, eventually, unique

LONG_AGO = date(2001, 3, 4)  # a period of its own: shredding it touches no other test's keys


def raw(text: str) -> Record:
    return Record("omnihub.interactions.v1", b"bucket:0000", text.encode(), [("ce_id", b"x")])


async def test_every_keeper_agrees_and_announces_the_coming_days(
    pool: asyncpg.Pool, producer: Producer, stack: Any
) -> None:
    first, second = PeriodKeyring(), PeriodKeyring()
    today = utcnow().date()
    announced = await PeriodKeeper(first, 7, "tests").keep(pool, producer.send_all)
    again = await PeriodKeeper(second, 7, "tests").keep(pool, producer.send_all)
    days = [(today + timedelta(days=n)).isoformat() for n in range(periods.DAYS_AHEAD + 1)]
    assert first.known() == second.known() == days
    assert [r.value for r in announced] == [r.value for r in again]  # the same pairs
    # a process with Kafka alone learns them from the topic
    follower = PeriodKeyFollower(stack.bootstrap, PeriodKeyring())
    await follower.start()
    try:
        await eventually(lambda: asyncio.sleep(0, set(days) <= set(follower.keyring.known())))
        sealed = await follower.keyring.sealed([raw("hello from a channel process")])
    finally:
        await follower.stop()
    [opened] = await SealedReader().values(pool, sealed)
    assert opened == b"hello from a channel process"
    records = await consume(
        stack.bootstrap, PERIOD_KEYS.name, lambda rs: {r.key.decode() for r in rs} >= set(days)
    )
    assert all(b"private" not in r.value for r in records)


async def test_raw_records_open_until_their_period_key_is_shredded(pool: asyncpg.Pool) -> None:
    keyring = PeriodKeyring()
    keyring.learn(await ensure_keys(pool, LONG_AGO))
    then = datetime.combine(LONG_AGO, datetime.min.time(), UTC)
    sealer = await keyring.sealer(now=then)
    text = unique("Ada Lovelace +447700900123")
    value, seal = sealer.seal(text.encode())
    record = Record("t", None, value, seal.headers())
    assert text.encode() not in value
    assert header_map(record.headers)[SCHEME_HEADER] == "period"
    assert header_map(record.headers)[KEY_ID_HEADER] == LONG_AGO.isoformat()
    assert await SealedReader().values(pool, [record]) == [text.encode()]

    kept = 7
    # the day after the bound: nothing yet; a day later the key is gone
    assert LONG_AGO.isoformat() not in await shred_expired(pool, LONG_AGO + timedelta(kept), kept)
    shredded = await shred_expired(pool, LONG_AGO + timedelta(kept + 1), kept)
    assert LONG_AGO.isoformat() in shredded
    [why] = await SealedReader().open_each(pool, [record])
    assert isinstance(why, Unopened) and why.erased and "OMNIHUB_RAW_RECORD_DAYS" in why.reason
    # today's keys are untouched
    today = utcnow().date().isoformat()
    assert await pool.fetchval("SELECT count(*) FROM period_keys WHERE period = $1", today) == 1


async def test_a_tampered_or_misnamed_raw_record_does_not_open(pool: asyncpg.Pool) -> None:
    keyring = PeriodKeyring()
    keyring.learn(await ensure_keys(pool, utcnow().date()))
    [record] = await keyring.sealed([raw("the real text")])
    tampered = Record(record.topic, record.key, record.value[:-1] + b"\0", record.headers)
    other_day = (utcnow().date() + timedelta(days=1)).isoformat().encode()
    misnamed = Record(
        record.topic,
        record.key,
        record.value,
        [(k, other_day if k == KEY_ID_HEADER else v) for k, v in record.headers],
    )
    for bad in (tampered, misnamed):
        [why] = await SealedReader().open_each(pool, [bad])
        assert isinstance(why, Unopened) and not why.erased


async def test_without_the_days_key_nothing_is_published(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(periods, "KEY_WAIT_SECONDS", 0.2)
    with pytest.raises(PublishError, match="no public key for period"):
        await PeriodKeyring().sealed([raw("hello")])


async def test_a_refused_request_is_dead_lettered_sealed(
    pool: asyncpg.Pool, producer: Producer, stack: Any
) -> None:
    keyring = PeriodKeyring()
    await PeriodKeeper(keyring, 7, "tests").keep(pool, producer.send_all)
    marker = unique("From=%2B447700900999&Body=refund")
    reason = unique("unparseable form")
    request = InboundRequest(
        "POST", "http://hub/channels/sms", {"content-type": "text/plain"}, marker.encode()
    )
    await KafkaPublisher(producer, keyring).dead_letter(request, reason, "channel:sms")
    records = await consume(
        stack.bootstrap,
        DEADLETTER.name,
        lambda rs: any(header_map(r.headers).get(ERROR_HEADER) == reason for r in rs),
    )
    [record] = [r for r in records if header_map(r.headers).get(ERROR_HEADER) == reason]
    headers = header_map(record.headers)
    assert (headers["content-type"], headers[SCHEME_HEADER]) == (SEALED_CONTENT_TYPE, "period")
    assert marker.encode() not in record.value
    assert await SealedReader().values(pool, [record]) == [marker.encode()]

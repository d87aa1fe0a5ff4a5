"""Period keys: the hub's X25519 key pair of each UTC day, for raw records (the ``period``
scheme of schemas/sealing.py).

The private keys live only in PostgreSQL; every process with a database makes the coming days'
pairs (idempotently) and announces their public keys on the period keys topic, from which a
channel process that has only Kafka learns them. A day's private key is deleted
``OMNIHUB_RAW_RECORD_DAYS`` after the day, which bounds how long an erased customer's raw
records stay readable (docs/topics.md#erasure).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import date, datetime, timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition

from channels.base import PublishError
from channels.base.source import cancel
from schemas import PeriodKey
from schemas.events import utcnow
from schemas.sealing import PeriodSealer, Seal, new_period_keypair, period_of
from schemas.topics import PERIOD_KEYS
from services.bus.records import Record, to_record
from services.keys.seal import sealed_with
from services.keys.store import Db

log = logging.getLogger(__name__)

#: What a keeper publishes with: ``Producer.send_all``.
Send = Callable[[list[Record]], Awaitable[None]]

#: Days ahead whose keys exist and are announced, so a process that lost touch for a while
#: (or whose clock runs ahead) still has the day's key.
DAYS_AHEAD = 2
#: How often a keeper makes the coming days' keys and shreds the expired ones.
KEEP_EVERY_SECONDS = 600.0
#: How long a publish waits for the day's public key before answering 503.
KEY_WAIT_SECONDS = 5.0

_MAKE = """
INSERT INTO period_keys (period, private_key, public_key)
SELECT * FROM unnest($1::text[], $2::bytea[], $3::bytea[])
ON CONFLICT (period) DO NOTHING
"""


async def ensure_keys(db: Db, today: date, ahead: int = DAYS_AHEAD) -> list[PeriodKey]:
    """The public keys of ``today`` and the ``ahead`` days after it, made where missing."""
    periods = [(today + timedelta(days=n)).isoformat() for n in range(ahead + 1)]
    pairs = [new_period_keypair() for _ in periods]
    await db.execute(_MAKE, periods, [p[0] for p in pairs], [p[1] for p in pairs])
    rows = await db.fetch(
        "SELECT period, public_key FROM period_keys WHERE period = ANY($1::text[]) ORDER BY period",
        periods,
    )
    return [
        PeriodKey(period=r["period"], public_key=base64.b64encode(r["public_key"]).decode())
        for r in rows
    ]


async def shred_expired(db: Db, today: date, days_kept: int) -> list[str]:
    """Delete the private keys of the periods more than ``days_kept`` days before ``today``;
    the periods deleted."""
    cutoff = (today - timedelta(days=days_kept)).isoformat()
    rows = await db.fetch("DELETE FROM period_keys WHERE period < $1 RETURNING period", cutoff)
    return sorted(r["period"] for r in rows)


async def private_keys(db: Db, periods: Iterable[str]) -> dict[str, bytes]:
    """The private keys of ``periods`` that still exist."""
    rows = await db.fetch(
        "SELECT period, private_key FROM period_keys WHERE period = ANY($1::text[])",
        list(periods),
    )
    return {r["period"]: bytes(r["private_key"]) for r in rows}


class PeriodKeyring:
    """The public keys a process seals raw records with; one sender key a period."""

    def __init__(self) -> None:
        self._public: dict[str, bytes] = {}
        self._sealers: dict[str, PeriodSealer] = {}
        self._learnt = asyncio.Event()

    def learn(self, keys: Iterable[PeriodKey]) -> None:
        """Remember announced public keys (a period's key never changes)."""
        for key in keys:
            self._public.setdefault(key.period, base64.b64decode(key.public_key))
        self._learnt.set()

    def known(self) -> list[str]:
        """The periods whose public keys this process knows."""
        return sorted(self._public)

    async def sealer(self, now: datetime | None = None) -> PeriodSealer:
        """The sender key of the current period; PublishError when its public key is still
        unknown after ``KEY_WAIT_SECONDS`` (nothing can be published that could be erased)."""
        period = period_of(now or utcnow())
        sealer = self._sealers.get(period)
        if sealer is not None:
            return sealer
        try:
            async with asyncio.timeout(KEY_WAIT_SECONDS):
                while period not in self._public:
                    self._learnt.clear()
                    await self._learnt.wait()
        except TimeoutError:
            pass
        public = self._public.get(period)
        if public is None:
            raise PublishError(f"no public key for period {period} announced yet")
        sealer = self._sealers[period] = PeriodSealer.for_public_key(period, public)
        for old in [p for p in self._sealers if p < period]:
            del self._sealers[old]
        return sealer

    async def sealed(self, records: Sequence[Record]) -> list[Record]:
        """``records`` sealed with the current period's key."""
        if not records:
            return []
        sealer = await self.sealer()
        return sealed_with(
            records, sealer.data_key, Seal("period", sealer.period, sealer.ephemeral)
        )


class PeriodKeeper:
    """Makes the coming days' key pairs, announces their public keys and shreds the expired
    private keys, now and every ``KEEP_EVERY_SECONDS`` (every process with a database runs
    one: the statements are idempotent)."""

    def __init__(self, keyring: PeriodKeyring, days_kept: int, source: str) -> None:
        self.keyring = keyring
        self.days_kept = days_kept
        self.source = source
        self._announced: set[str] = set()

    async def keep(self, db: Db, send: Send, today: date | None = None) -> list[Record]:
        """One round; returns the announcements it published (new periods only)."""
        today = today or utcnow().date()
        keys = await ensure_keys(db, today)
        self.keyring.learn(keys)
        fresh = [k for k in keys if k.period not in self._announced]
        records = [to_record(PERIOD_KEYS, k, k.period, self.source) for k in fresh]
        if records:
            await send(records)
            self._announced.update(k.period for k in fresh)
        shredded = await shred_expired(db, today, self.days_kept)
        if shredded:
            log.info("period keys of %s deleted: their raw records are unreadable now", shredded)
        return records

    async def run(self, db: Db, send: Send) -> None:
        """Keep until cancelled; a failed round is logged and tried again next time."""
        while True:
            try:
                await self.keep(db, send)
            except Exception as exc:  # the database or broker is away: the next round
                log.warning("period keys not kept this round: %r", exc)
            await asyncio.sleep(KEEP_EVERY_SECONDS)


class PeriodKeyFollower:
    """Follows the period keys topic from its start (a channel process with Kafka only)."""

    def __init__(self, bootstrap: str, keyring: PeriodKeyring) -> None:
        self.bootstrap = bootstrap
        self.keyring = keyring
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start reading every announcement, past and coming."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            fetch_max_wait_ms=500,
        )
        await consumer.start()
        partitions = [TopicPartition(PERIOD_KEYS.name, p) for p in range(PERIOD_KEYS.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run(consumer), name="period-keys")

    async def stop(self) -> None:
        """Stop reading."""
        task, self._task = self._task, None
        await cancel(task)
        consumer, self._consumer = self._consumer, None
        if consumer is None:
            return
        try:
            await consumer.stop()
        except asyncio.CancelledError:
            # aiokafka's fetcher, closed while the broker is gone, lets its own fetch task's
            # cancellation out; only a cancellation of this task goes on
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                keys = []
                for record in records:
                    try:
                        keys.append(PeriodKey.model_validate_json(record.value or b""))
                    except ValueError:
                        log.warning("period keys topic: a record that is not a key; skipped")
                self.keyring.learn(keys)

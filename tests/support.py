"""Test support: the real embedded stack, components as real processes, polling helpers."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schemas.sealing import Seal, open_sealed
from services.bus.producer import KafkaPublisher, Producer
from services.bus.records import Record
from services.keys.periods import PeriodKeeper, PeriodKeyring
from services.keys.reader import SealedReader
from services.keys.seal import sealed_for

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def unique(prefix: str = "t") -> str:
    """A value no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def eventually(
    probe: Callable[[], Awaitable[T]], timeout: float = 20.0, interval: float = 0.05
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def start_component(name: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `omnihub run <name>` as its own process group, logging to ``log``."""
    handle = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", *name.split()],
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )


def stop_process(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 20.0
) -> None:
    """Stop a component and anything left in its process group."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


async def consume(
    bootstrap: str, topic: str, until: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    """Read ``topic`` from the beginning until ``until(records)`` holds (counting by consuming)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for messages in batch.values():
                records.extend(messages)
            if until(records):
                return records
    finally:
        await consumer.stop()
    raise AssertionError(f"{topic}: condition not met within {timeout}s ({len(records)} records)")


def phone() -> str:
    """A fresh, valid French mobile number in E.164."""
    return f"+336{uuid.uuid4().int % 10**8:08d}"


def email(prefix: str = "c") -> str:
    """A fresh email address."""
    return f"{unique(prefix)}@example.com"


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record of a topic: read until two polls in a row bring nothing new."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    records: list[Any] = []
    quiet = 0
    try:
        while quiet < 2:
            batch = await consumer.getmany(timeout_ms=300)
            got = [r for part in batch.values() for r in part]
            records += got
            quiet = 0 if got else quiet + 1
    finally:
        await consumer.stop()
    return records


class DepartmentKeys:
    """Opens sealed department records as a department does: keys from GET /v1/keys/{id}
    (a token with keys:read), cached by key id; a plain record's value is returned as it is."""

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url
        self.headers = {"authorization": f"Bearer {token}"}
        self.keys: dict[str, bytes] = {}

    def open(self, headers: Mapping[str, str], value: bytes) -> bytes | None:
        """The record's JSON value; None when its key is gone (the customer was erased).
        Blocking HTTP: call it from a thread or sync code."""
        seal = Seal.of(headers)
        if seal is None:
            return value
        if seal.key_id not in self.keys:
            answer = httpx.get(
                f"{self.api_url}/v1/keys/{seal.key_id}", headers=self.headers, timeout=10
            )
            if answer.status_code == 404:
                return None
            answer.raise_for_status()
            self.keys[seal.key_id] = base64.b64decode(answer.json()["key"])
        return open_sealed(self.keys[seal.key_id], seal.key_id, value)


async def opened_values(pool: Any, records: Sequence[Any]) -> list[bytes | None]:
    """The plaintext values of consumed records (None: the customer's key was erased)."""
    return await SealedReader().values(pool, records)


async def sealing_publisher(producer: Producer, database: Any) -> KafkaPublisher:
    """The channels' publisher over ``producer``, its period keys kept in ``database`` as the
    hub's processes keep them; given a pool or connection rather than a URL, it relays sealed
    with the customers' keys from there too (as the dispatcher's does)."""
    keyring = PeriodKeyring()
    keeper = PeriodKeeper(keyring, days_kept=7, source="tests")
    if isinstance(database, str):
        conn = await asyncpg.connect(database)
        try:
            await keeper.keep(conn, producer.send_all)
        finally:
            await conn.close()
        return KafkaPublisher(producer, keyring)
    await keeper.keep(database, producer.send_all)

    async def customer_seal(customer_id: uuid.UUID, records: Sequence[Record]) -> list[Record]:
        return await sealed_for(database, customer_id, records)

    return KafkaPublisher(producer, keyring, customer_seal)


async def announce_period_keys(bootstrap: str, database_url: str) -> None:
    """Make and announce the coming days' period keys as any hub process with a database
    does (for a channel process tested without one)."""
    producer = Producer(bootstrap, client_id="tests-keeper")
    await producer.start()
    try:
        await sealing_publisher(producer, database_url)
    finally:
        await producer.stop()


def bench_report(*args: str) -> dict[str, Any]:
    """The JSON report of `omnihub bench ARGS`, run as a command on its own embedded stack."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL"}  # its own embedded stack
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "bench", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def installed(path: str, package: str) -> str:
    """``path``, installing Debian's ``package`` with apt-get when it is missing (CI runs as
    root; the package lists are refreshed only when the first attempt fails)."""
    if not os.path.exists(path):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        apt = shutil.which("apt-get") or "apt-get"
        install = [apt, "install", "-y", "-qq", package]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run([apt, "update", "-qq"], env=env, check=True)
            subprocess.run(install, env=env, check=True)
    return path


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1 and its key: what the TLS tests trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    alt = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(alt, critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


#: The session dispatcher's OMNIHUB_API_CALLBACK_SECRET.
CALLBACK_SECRET = "test-callback-secret"


def dispatcher_env(component_env: dict[str, str], callback_port: int) -> dict[str, str]:
    """The environment of the session's dispatcher (and of any test's replacement of it): its
    API channel replies to a loopback callback server, and unseen chat replies are due after a
    second (tests/channels/webchat/test_offline.py)."""
    return dict(
        component_env,
        OMNIHUB_API_CALLBACK_URL=f"http://127.0.0.1:{callback_port}/replies",
        OMNIHUB_API_CALLBACK_SECRET=CALLBACK_SECRET,
        OMNIHUB_API_CALLBACK_BACKOFF="0.05",
        OMNIHUB_UNSEEN_REPLY_SECONDS="1",
    )

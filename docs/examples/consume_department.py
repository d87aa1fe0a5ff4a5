"""Consume a department's omnihub topic with confluent-kafka: one line per event.

    pip install confluent-kafka cryptography
    python consume_department.py --bootstrap localhost:9092 --department finance \
        --api-url http://127.0.0.1:8080 --token "$OMNIHUB_TOKEN" [--max 10]

Reads ``omnihub.routed.<department>.v1`` (and ``omnihub.customers.v1``, for deletions) in its
own consumer group, decodes the CloudEvents binary-mode headers (``ce_id``, ``ce_type``, ...)
and the JSON value, prints one line per record, and commits each record's offset once it is
processed (at least once: a record processed but not committed comes again after a crash, so
events are deduplicated on ``ce_id``). The topic contract is ``schemas/asyncapi.yaml``.

Deletions: ``customer.deleted`` on ``omnihub.customers.v1`` is the customer's tombstone (a
value, not a null one): forget everything held about ``customer_id`` and its ``merged_ids``.
A record with no value (a Kafka tombstone) is not published by the hub; it is reported and
skipped.

Sealed records (crypto-shredding): a record whose ``content-type`` is
``application/vnd.omnihub.sealed`` is AES-256-GCM under its customer's key, named by
``x-omnihub-key-id``. The key is fetched once from the hub (``GET /v1/keys/{key_id}``, a token
with only ``keys:read``: ``omnihub token create --role integration --scope keys:read``) and
kept until that customer's ``customer.deleted``. A 404 means the customer was erased: the
record is reported and skipped (committed). Any other failure to get a key is retried with a
back-off, the record uncommitted meanwhile; a 401 or 403 (the token) stops the consumer.
Plain records (``application/json``: the tombstones, older records) are read as they are.

Settings come from arguments or the environment: KAFKA_BOOTSTRAP_SERVERS, OMNIHUB_DEPARTMENT,
OMNIHUB_GROUP_ID, OMNIHUB_SESSION_TIMEOUT_MS, OMNIHUB_API_URL, OMNIHUB_TOKEN. Standalone: it
needs only confluent-kafka and cryptography.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import OrderedDict
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

DEPARTMENTS = ("sales", "marketing", "finance", "after_sales", "triage")
CUSTOMERS_TOPIC = "omnihub.customers.v1"
ROUTED_TYPE = "com.omnihub.routed.v1"
CUSTOMER_TYPE = "com.omnihub.customer.v1"
SEEN_LIMIT = 100_000  # ce_ids remembered for deduplication
SEALED_CONTENT_TYPE = "application/vnd.omnihub.sealed"
KEY_ID_HEADER = "x-omnihub-key-id"
SCHEME_HEADER = "x-omnihub-sealed"
NONCE_BYTES, TAG_BYTES = 12, 16
KEY_LIMIT = 100_000  # key ids remembered (keys and erasures)
BACKOFF_FIRST, BACKOFF_MAX = 0.25, 8.0  # seconds between attempts to get a key


def department_topic(department: str) -> str:
    """The topic a department consumes."""
    return f"omnihub.routed.{department}.v1"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument(
        "--bootstrap",
        default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"),
        help="bootstrap servers (KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument(
        "--department",
        default=env("OMNIHUB_DEPARTMENT"),
        choices=DEPARTMENTS,
        required=env("OMNIHUB_DEPARTMENT") is None,
        help="the department whose topic to read (OMNIHUB_DEPARTMENT)",
    )
    parser.add_argument(
        "--group", default=env("OMNIHUB_GROUP_ID"), help="consumer group (OMNIHUB_GROUP_ID)"
    )
    parser.add_argument("--max", type=int, default=0, help="stop after N records (0: never)")
    parser.add_argument(
        "--from",
        dest="offset_reset",
        choices=("earliest", "latest"),
        default="earliest",
        help="where a new group starts (default: earliest)",
    )
    parser.add_argument(
        "--no-customers",
        action="store_true",
        help=f"do not read {CUSTOMERS_TOPIC} (deletions, merges)",
    )
    parser.add_argument(
        "--session-timeout-ms",
        type=int,
        default=int(env("OMNIHUB_SESSION_TIMEOUT_MS", "6000")),
        help="consumer group session timeout (OMNIHUB_SESSION_TIMEOUT_MS, default 6000)",
    )
    parser.add_argument(
        "--api-url",
        default=env("OMNIHUB_API_URL", "http://127.0.0.1:8080"),
        help="the hub's API, where sealed records' keys are fetched (OMNIHUB_API_URL)",
    )
    parser.add_argument(
        "--token",
        default=env("OMNIHUB_TOKEN"),
        required=env("OMNIHUB_TOKEN") is None,
        help="an API token with the keys:read scope (OMNIHUB_TOKEN)",
    )
    args = parser.parse_args(argv)
    if urllib.parse.urlsplit(args.api_url).scheme not in ("http", "https"):
        parser.error("--api-url: an http:// or https:// URL")
    args.group = args.group or f"{args.department}-example"
    return args


def where_of(message: Message) -> str:
    """Where a record is: topic[partition]@offset."""
    return f"{message.topic()}[{message.partition()}]@{message.offset()}"


def text(value: str | bytes | None) -> str:
    """A header value or key as text (Kafka gives bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


class KeyUnavailable(Exception):
    """The hub gave no answer for a key (down, 5xx, ...): process the record again later."""


class KeyRefused(Exception):
    """The hub refused the token (401, 403): retrying cannot help, so the consumer stops."""


class Unopenable(Exception):
    """A sealed record that can never be opened (bad headers, altered value)."""


class Keys:
    """Customer keys fetched from the hub by key id, kept until the customer's deletion.

    None for a key id means erased (404): its records are skipped without asking again.
    """

    def __init__(self, api_url: str, token: str) -> None:
        self.api_url = api_url.rstrip("/")
        self.token = token
        self.by_id: dict[str, bytes | None] = {}
        self.customer_of: dict[str, str] = {}  # key id -> customer id, from opened records

    def get(self, key_id: str) -> bytes | None:
        """The key (None: its customer was erased); KeyUnavailable, KeyRefused."""
        if key_id in self.by_id:
            return self.by_id[key_id]
        request = urllib.request.Request(  # noqa: S310 (parse_args allows http(s) only)
            f"{self.api_url}/v1/keys/{key_id}",
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                body = json.load(response)
            key: bytes | None = base64.b64decode(body["key"], validate=True)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:  # erased (or never made): no record of it opens again
                key = None
            elif exc.code in (401, 403):
                raise KeyRefused(f"the hub answered {exc.code} for the token") from exc
            else:
                raise KeyUnavailable(f"HTTP {exc.code}") from exc
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise KeyUnavailable(repr(exc)) from exc  # URLError and timeouts are OSErrors
        if key is not None and len(key) != 32:
            raise KeyUnavailable(f"the hub sent a {len(key)}-byte key")
        if len(self.by_id) >= KEY_LIMIT:
            self.by_id.clear()
            self.customer_of.clear()
        self.by_id[key_id] = key
        return key

    def forget(self, customers: list[str]) -> int:
        """Drop the keys of ``customers`` (deleted); how many were held."""
        gone = [k for k, customer in self.customer_of.items() if customer in customers]
        for key_id in gone:
            del self.customer_of[key_id]
            self.by_id.pop(key_id, None)
        return len(gone)


def open_sealed(key: bytes, key_id: str, value: bytes) -> bytes:
    """``nonce (12 bytes) || ciphertext || tag (16 bytes)``, the key id as associated data."""
    if len(value) < NONCE_BYTES + TAG_BYTES:
        raise Unopenable("sealed value too short")
    try:
        return AESGCM(key).decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], key_id.encode())
    except InvalidTag as exc:
        raise Unopenable("sealed value does not open with its key (altered?)") from exc


class Department:
    """What a department's system would do with its events; here it prints and counts them."""

    def __init__(self, name: str, keys: Keys) -> None:
        self.name = name
        self.keys = keys
        self.seen: OrderedDict[str, None] = OrderedDict()  # recent ce_ids, oldest first
        self.held: dict[str, int] = {}  # events held per customer id

    def handle(self, message: Message) -> str:
        """Process one record; return its line (KeyUnavailable: not processed, try again)."""
        where = where_of(message)
        pairs = message.headers() or []  # a consumer's records give (name, bytes) pairs
        if isinstance(pairs, dict):
            pairs = list(pairs.items())
        headers = {name: text(value) for name, value in pairs}  # the last of a name wins
        key = text(message.key())
        raw = message.value()
        if raw is None:
            return f"tombstone {where} key={key}: no value, skipped"
        ce_id, ce_type = headers.get("ce_id", ""), headers.get("ce_type", "")
        if ce_id and ce_id in self.seen:
            return f"duplicate {where} ce_id={ce_id}: already processed"
        key_id = ""
        if headers.get("content-type") == SEALED_CONTENT_TYPE:
            key_id = headers.get(KEY_ID_HEADER, "")
            try:
                raw = self.open(headers, key_id, raw)
            except Unopenable as exc:
                return f"unopenable {where} ce_id={ce_id} ce_type={ce_type}: {exc}, skipped"
            if raw is None:
                self.remember(ce_id)
                return (
                    f"erased ce_id={ce_id} ce_type={ce_type} key_id={key_id}: the record's"
                    f" customer was erased, skipped ({where})"
                )
        try:
            value: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            return f"undecodable {where} ce_type={ce_type}: {exc}"
        if key_id and isinstance(value.get("customer_id"), str):
            self.keys.customer_of[key_id] = value["customer_id"]  # dropped on its deletion
        if ce_type == ROUTED_TYPE:
            line = self.routed(ce_id, value)
        elif ce_type == CUSTOMER_TYPE:
            line = self.customer(ce_id, value)
        else:
            line = f"unknown ce_type={ce_type!r} ce_id={ce_id}"
        self.remember(ce_id)
        return f"{line} ({where}, ce_source={headers.get('ce_source', '')})"

    def open(self, headers: dict[str, str], key_id: str, value: bytes) -> bytes | None:
        """A sealed value's plaintext; None when its customer was erased."""
        scheme = headers.get(SCHEME_HEADER, "")
        if scheme != "customer":
            raise Unopenable(f"{SCHEME_HEADER}={scheme!r}: not a customer key")
        try:
            uuid.UUID(key_id)  # never ask the hub about anything else
        except ValueError as exc:
            raise Unopenable(f"{KEY_ID_HEADER}={key_id!r}: not a key id") from exc
        key = self.keys.get(key_id)
        return None if key is None else open_sealed(key, key_id, value)

    def routed(self, ce_id: str, event: dict[str, Any]) -> str:
        routing, interaction = event["routing"], event["interaction"]
        customer = event["customer_id"]
        self.held[customer] = self.held.get(customer, 0) + 1
        text = (interaction.get("subject") or interaction.get("text") or "")[:60]
        return (
            f"routed ce_id={ce_id} customer={customer} department={routing['department']}"
            f" copy_of={routing.get('copy_of') or '-'} priority={routing['priority']}"
            f" rule={routing['rule_id']} channel={interaction['channel']}"
            f" kind={interaction['kind']} text={json.dumps(text, ensure_ascii=False)}"
        )

    def customer(self, ce_id: str, event: dict[str, Any]) -> str:
        kind, customer = event["type"], event["customer_id"]
        if kind == "customer.deleted":  # forget the customer and the ids merged into it
            ids = [customer, *event.get("merged_ids", [])]
            forgotten = sum(self.held.pop(i, 0) for i in ids)
            dropped = self.keys.forget(ids)  # its records must not open any more here
            return (
                f"customer.deleted ce_id={ce_id} customer={customer}"
                f" aliases={','.join(ids[1:]) or '-'}: forgot {forgotten} event(s),"
                f" {dropped} key(s)"
            )
        if kind == "customer.merged":  # the merged ids now answer as this customer
            for merged in event.get("merged_ids", []):
                self.held[customer] = self.held.get(customer, 0) + self.held.pop(merged, 0)
            return f"customer.merged ce_id={ce_id} customer={customer} merged={event['merged_ids']}"
        return f"{kind} ce_id={ce_id} customer={customer}"

    def remember(self, ce_id: str) -> None:
        if ce_id:
            self.seen[ce_id] = None
            if len(self.seen) > SEEN_LIMIT:
                self.seen.popitem(last=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    topics = [department_topic(args.department)]
    if not args.no_customers:
        topics.append(CUSTOMERS_TOPIC)
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": args.group,
            "auto.offset.reset": args.offset_reset,
            "enable.auto.commit": False,  # commit after processing, below
            "session.timeout.ms": args.session_timeout_ms,
            "heartbeat.interval.ms": max(args.session_timeout_ms // 6, 100),
        }
    )
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    department = Department(args.department, Keys(args.api_url, args.token))
    consumer.subscribe(topics)
    print(f"reading {', '.join(topics)} as group {args.group}", file=sys.stderr, flush=True)
    count = 0
    backoff = BACKOFF_FIRST
    try:
        while not stopping and (args.max <= 0 or count < args.max):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal():
                    raise KafkaException(error)
                print(f"kafka: {error}", file=sys.stderr, flush=True)
                continue
            try:
                line = department.handle(message)
            except KeyUnavailable as exc:
                # Not processed: read it again after a pause. Seeking back, rather than
                # waiting here, keeps polling (a consumer that stops polling leaves its group).
                again = f"key for {where_of(message)}: {exc}; again in {backoff}s"
                print(again, file=sys.stderr, flush=True)
                topic, partition, offset = message.topic(), message.partition(), message.offset()
                assert topic is not None and partition is not None and offset is not None
                consumer.seek(TopicPartition(topic, partition, offset))
                time.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            except KeyRefused as exc:
                print(f"stopping at {where_of(message)}, not committed: {exc}", file=sys.stderr)
                return 1
            backoff = BACKOFF_FIRST
            print(line, flush=True)
            consumer.commit(message=message, asynchronous=False)  # processed: commit it
            count += 1
    finally:
        consumer.close()  # leaves the group at once (nothing uncommitted is committed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

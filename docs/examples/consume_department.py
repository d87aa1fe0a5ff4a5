"""Consume a department's omnihub topic with confluent-kafka: one line per event.

    pip install confluent-kafka
    python consume_department.py --bootstrap localhost:9092 --department finance [--max 10]

Reads ``omnihub.routed.<department>.v1`` (and ``omnihub.customers.v1``, for deletions) in its
own consumer group, decodes the CloudEvents binary-mode headers (``ce_id``, ``ce_type``, ...)
and the JSON value, prints one line per record, and commits each record's offset once it is
processed (at least once: a record processed but not committed comes again after a crash, so
events are deduplicated on ``ce_id``). The topic contract is ``schemas/asyncapi.yaml``.

Deletions: ``customer.deleted`` on ``omnihub.customers.v1`` is the customer's tombstone (a
value, not a null one): forget everything held about ``customer_id`` and its ``merged_ids``.
A record with no value (a Kafka tombstone) is not published by the hub; it is reported and
skipped.

Settings come from arguments or the environment: KAFKA_BOOTSTRAP_SERVERS, OMNIHUB_DEPARTMENT,
OMNIHUB_GROUP_ID, OMNIHUB_SESSION_TIMEOUT_MS. Standalone: it needs only confluent-kafka.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import OrderedDict
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message

DEPARTMENTS = ("sales", "marketing", "finance", "after_sales", "triage")
CUSTOMERS_TOPIC = "omnihub.customers.v1"
ROUTED_TYPE = "com.omnihub.routed.v1"
CUSTOMER_TYPE = "com.omnihub.customer.v1"
SEEN_LIMIT = 100_000  # ce_ids remembered for deduplication


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
    args = parser.parse_args(argv)
    args.group = args.group or f"{args.department}-example"
    return args


def text(value: str | bytes | None) -> str:
    """A header value or key as text (Kafka gives bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


class Department:
    """What a department's system would do with its events; here it prints and counts them."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: OrderedDict[str, None] = OrderedDict()  # recent ce_ids, oldest first
        self.held: dict[str, int] = {}  # events held per customer id

    def handle(self, message: Message) -> str:
        """Process one record; return its line."""
        where = f"{message.topic()}[{message.partition()}]@{message.offset()}"
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
        try:
            value: dict[str, Any] = json.loads(raw)
        except ValueError as exc:
            return f"undecodable {where} ce_type={ce_type}: {exc}"
        if ce_type == ROUTED_TYPE:
            line = self.routed(ce_id, value)
        elif ce_type == CUSTOMER_TYPE:
            line = self.customer(ce_id, value)
        else:
            line = f"unknown ce_type={ce_type!r} ce_id={ce_id}"
        self.remember(ce_id)
        return f"{line} ({where}, ce_source={headers.get('ce_source', '')})"

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
            return (
                f"customer.deleted ce_id={ce_id} customer={customer}"
                f" aliases={','.join(ids[1:]) or '-'}: forgot {forgotten} event(s)"
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
    department = Department(args.department)
    consumer.subscribe(topics)
    print(f"reading {', '.join(topics)} as group {args.group}", file=sys.stderr, flush=True)
    count = 0
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
            print(department.handle(message), flush=True)
            consumer.commit(message=message, asynchronous=False)  # processed: commit it
            count += 1
    finally:
        consumer.close()  # leaves the group at once
    return 0


if __name__ == "__main__":
    sys.exit(main())

// Consume a department's omnihub topic with kafkajs: one line per event.
//
//   npm ci
//   node consume_department.mjs --bootstrap localhost:9092 --department finance [--max 10]
//
// Reads omnihub.routed.<department>.v1 (and omnihub.customers.v1, for deletions) in its own
// consumer group, decodes the CloudEvents binary-mode headers (ce_id, ce_type, ...) and the
// JSON value, prints one line per record, and commits each record's offset once it is
// processed (at least once: a record processed but not committed comes again after a crash,
// so events are deduplicated on ce_id). The topic contract is schemas/asyncapi.yaml.
//
// Deletions: customer.deleted on omnihub.customers.v1 is the customer's tombstone (a value,
// not a null one): forget everything held about customer_id and its merged_ids. A record with
// no value (a Kafka tombstone) is not published by the hub; it is reported and skipped.
//
// Settings come from arguments or the environment: KAFKA_BOOTSTRAP_SERVERS,
// OMNIHUB_DEPARTMENT, OMNIHUB_GROUP_ID, OMNIHUB_SESSION_TIMEOUT_MS.

import { parseArgs } from "node:util";
import { Kafka, logLevel } from "kafkajs";

const DEPARTMENTS = ["sales", "marketing", "finance", "after_sales", "triage"];
const CUSTOMERS_TOPIC = "omnihub.customers.v1";
const ROUTED_TYPE = "com.omnihub.routed.v1";
const CUSTOMER_TYPE = "com.omnihub.customer.v1";
const SEEN_LIMIT = 100_000; // ce_ids remembered for deduplication

function settings() {
  const env = process.env;
  const { values } = parseArgs({
    options: {
      bootstrap: { type: "string", default: env.KAFKA_BOOTSTRAP_SERVERS ?? "localhost:9092" },
      department: { type: "string", default: env.OMNIHUB_DEPARTMENT },
      group: { type: "string", default: env.OMNIHUB_GROUP_ID },
      max: { type: "string", default: "0" },
      from: { type: "string", default: "earliest" },
      "no-customers": { type: "boolean", default: false },
      "session-timeout-ms": { type: "string", default: env.OMNIHUB_SESSION_TIMEOUT_MS ?? "6000" },
    },
  });
  if (!DEPARTMENTS.includes(values.department)) {
    throw new Error(`--department (or OMNIHUB_DEPARTMENT): one of ${DEPARTMENTS.join(", ")}`);
  }
  if (!["earliest", "latest"].includes(values.from)) {
    throw new Error("--from: earliest or latest");
  }
  for (const name of ["max", "session-timeout-ms"]) {
    if (!/^\d+$/.test(values[name])) throw new Error(`--${name}: a whole number`);
  }
  return {
    bootstrap: values.bootstrap.split(","),
    department: values.department,
    group: values.group ?? `${values.department}-example-node`,
    max: Number.parseInt(values.max, 10),
    fromBeginning: values.from === "earliest",
    customers: !values["no-customers"],
    sessionTimeout: Number.parseInt(values["session-timeout-ms"], 10),
  };
}

const text = (buffer) => (buffer == null ? "" : Buffer.from(buffer).toString("utf8"));

/** What a department's system would do with its events; here it prints and counts them. */
class Department {
  constructor(name) {
    this.name = name;
    this.seen = new Set(); // recent ce_ids, oldest first (a Set keeps insertion order)
    this.held = new Map(); // events held per customer id
  }

  /** Process one record; return its line. */
  handle(topic, partition, message) {
    const where = `${topic}[${partition}]@${message.offset}`;
    const headers = {};
    for (const [name, value] of Object.entries(message.headers ?? {})) {
      headers[name] = text(Array.isArray(value) ? value.at(-1) : value);
    }
    if (message.value == null) {
      return `tombstone ${where} key=${text(message.key)}: no value, skipped`;
    }
    const ceId = headers.ce_id ?? "";
    const ceType = headers.ce_type ?? "";
    if (ceId && this.seen.has(ceId)) {
      return `duplicate ${where} ce_id=${ceId}: already processed`;
    }
    let value;
    try {
      value = JSON.parse(text(message.value));
    } catch (error) {
      return `undecodable ${where} ce_type=${ceType}: ${error.message}`;
    }
    let line;
    if (ceType === ROUTED_TYPE) line = this.routed(ceId, value);
    else if (ceType === CUSTOMER_TYPE) line = this.customer(ceId, value);
    else line = `unknown ce_type=${JSON.stringify(ceType)} ce_id=${ceId}`;
    this.remember(ceId);
    return `${line} (${where}, ce_source=${headers.ce_source ?? ""})`;
  }

  routed(ceId, event) {
    const { routing, interaction } = event;
    const customer = event.customer_id;
    this.held.set(customer, (this.held.get(customer) ?? 0) + 1);
    const body = (interaction.subject || interaction.text || "").slice(0, 60);
    return (
      `routed ce_id=${ceId} customer=${customer} department=${routing.department}` +
      ` copy_of=${routing.copy_of ?? "-"} priority=${routing.priority}` +
      ` rule=${routing.rule_id} channel=${interaction.channel}` +
      ` kind=${interaction.kind} text=${JSON.stringify(body)}`
    );
  }

  customer(ceId, event) {
    const customer = event.customer_id;
    const merged = event.merged_ids ?? [];
    if (event.type === "customer.deleted") {
      // forget the customer and the ids merged into it
      let forgotten = 0;
      for (const id of [customer, ...merged]) {
        forgotten += this.held.get(id) ?? 0;
        this.held.delete(id);
      }
      return (
        `customer.deleted ce_id=${ceId} customer=${customer}` +
        ` aliases=${merged.join(",") || "-"}: forgot ${forgotten} event(s)`
      );
    }
    if (event.type === "customer.merged") {
      // the merged ids now answer as this customer
      for (const id of merged) {
        this.held.set(customer, (this.held.get(customer) ?? 0) + (this.held.get(id) ?? 0));
        this.held.delete(id);
      }
      return `customer.merged ce_id=${ceId} customer=${customer} merged=${merged.join(",")}`;
    }
    return `${event.type} ce_id=${ceId} customer=${customer}`;
  }

  remember(ceId) {
    if (!ceId) return;
    this.seen.add(ceId);
    if (this.seen.size > SEEN_LIMIT) this.seen.delete(this.seen.values().next().value);
  }
}

async function main() {
  const config = settings();
  const topics = [`omnihub.routed.${config.department}.v1`];
  if (config.customers) topics.push(CUSTOMERS_TOPIC);
  const kafka = new Kafka({
    clientId: config.group,
    brokers: config.bootstrap,
    logLevel: logLevel.WARN,
    // kafkajs logs to stdout; keep stdout for the events
    logCreator:
      () =>
      ({ namespace, level, log }) =>
        console.error(`kafkajs ${level} ${namespace}: ${log.message}`),
  });
  const consumer = kafka.consumer({
    groupId: config.group,
    sessionTimeout: config.sessionTimeout,
    heartbeatInterval: Math.max(Math.floor(config.sessionTimeout / 6), 100),
  });
  const department = new Department(config.department);
  let count = 0;
  let finish;
  const finished = new Promise((resolve, reject) => {
    finish = (error) => (error ? reject(error) : resolve());
  });
  for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => finish());
  consumer.on(consumer.events.CRASH, ({ payload }) => {
    if (!payload.restart) finish(payload.error); // kafkajs gave up: stop with its error
  });

  await consumer.connect();
  await consumer.subscribe({ topics, fromBeginning: config.fromBeginning });
  console.error(`reading ${topics.join(", ")} as group ${config.group}`);
  await consumer.run({
    autoCommit: false, // commit after processing, below
    eachMessage: async ({ topic, partition, message }) => {
      if (config.max > 0 && count >= config.max) return; // done: left uncommitted
      console.log(department.handle(topic, partition, message));
      // processed: commit it (the committed offset is the next one to read)
      const next = (BigInt(message.offset) + 1n).toString();
      await consumer.commitOffsets([{ topic, partition, offset: next }]);
      count += 1;
      if (config.max > 0 && count >= config.max) finish();
    },
  });
  try {
    await finished;
  } finally {
    await consumer.disconnect(); // leaves the group at once
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

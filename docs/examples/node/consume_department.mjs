// Consume a department's omnihub topic with kafkajs: one line per event.
//
//   npm ci
//   node consume_department.mjs --bootstrap localhost:9092 --department finance \
//     --api-url http://127.0.0.1:8080 --token "$OMNIHUB_TOKEN" [--max 10]
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
// Sealed records (crypto-shredding): a record whose content-type is
// application/vnd.omnihub.sealed is AES-256-GCM under its customer's key, named by
// x-omnihub-key-id. The key is fetched once from the hub (GET /v1/keys/{key_id}, a token with
// only keys:read: omnihub token create --role integration --scope keys:read) and kept until
// that customer's customer.deleted. A 404 means the customer was erased: the record is
// reported and skipped (committed). Any other failure to get a key is retried with a back-off,
// the record uncommitted meanwhile; a 401 or 403 (the token) stops the consumer. Plain records
// (application/json: the tombstones, older records) are read as they are.
//
// Settings come from arguments or the environment: KAFKA_BOOTSTRAP_SERVERS,
// OMNIHUB_DEPARTMENT, OMNIHUB_GROUP_ID, OMNIHUB_SESSION_TIMEOUT_MS, OMNIHUB_API_URL,
// OMNIHUB_TOKEN. Node.js 18.3+ (global fetch); kafkajs is its only dependency.

import { createDecipheriv } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { Kafka, logLevel } from "kafkajs";

const DEPARTMENTS = ["sales", "marketing", "finance", "after_sales", "triage"];
const CUSTOMERS_TOPIC = "omnihub.customers.v1";
const ROUTED_TYPE = "com.omnihub.routed.v1";
const CUSTOMER_TYPE = "com.omnihub.customer.v1";
const SEEN_LIMIT = 100_000; // ce_ids remembered for deduplication
const SEALED_CONTENT_TYPE = "application/vnd.omnihub.sealed";
const KEY_ID_HEADER = "x-omnihub-key-id";
const SCHEME_HEADER = "x-omnihub-sealed";
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const KEY_LIMIT = 100_000; // key ids remembered (keys and erasures)
const BACKOFF_FIRST_MS = 250; // between attempts to get a key, doubling up to BACKOFF_MAX_MS
const BACKOFF_MAX_MS = 8000;
const KEY_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

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
      "api-url": { type: "string", default: env.OMNIHUB_API_URL ?? "http://127.0.0.1:8080" },
      token: { type: "string", default: env.OMNIHUB_TOKEN },
    },
  });
  if (!values.token) throw new Error("--token (or OMNIHUB_TOKEN): a token with keys:read");
  if (!/^https?:\/\//.test(values["api-url"])) {
    throw new Error("--api-url (or OMNIHUB_API_URL): an http:// or https:// URL");
  }
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
    apiUrl: values["api-url"].replace(/\/+$/, ""),
    token: values.token,
  };
}

const text = (buffer) => (buffer == null ? "" : Buffer.from(buffer).toString("utf8"));

/** The hub gave no answer for a key (down, 5xx, ...): process the record again later. */
class KeyUnavailable extends Error {}
/** The hub refused the token (401, 403): retrying cannot help, so the consumer stops. */
class KeyRefused extends Error {}
/** A sealed record that can never be opened (bad headers, altered value). */
class Unopenable extends Error {}

/**
 * Customer keys fetched from the hub by key id, kept until the customer's deletion. null for
 * a key id means erased (404): its records are skipped without asking again.
 */
class Keys {
  constructor(apiUrl, token) {
    this.apiUrl = apiUrl;
    this.token = token;
    this.byId = new Map();
    this.customerOf = new Map(); // key id -> customer id, from opened records
  }

  /** The key (null: its customer was erased); throws KeyUnavailable, KeyRefused. */
  async get(keyId) {
    if (this.byId.has(keyId)) return this.byId.get(keyId);
    let key;
    try {
      const response = await fetch(`${this.apiUrl}/v1/keys/${keyId}`, {
        headers: { Authorization: `Bearer ${this.token}`, Accept: "application/json" },
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status === 404) {
        key = null; // erased (or never made): no record of it opens again
      } else if (response.status === 401 || response.status === 403) {
        throw new KeyRefused(`the hub answered ${response.status} for the token`);
      } else if (!response.ok) {
        throw new KeyUnavailable(`HTTP ${response.status}`);
      } else {
        key = Buffer.from((await response.json()).key, "base64");
      }
    } catch (error) {
      if (error instanceof KeyRefused || error instanceof KeyUnavailable) throw error;
      throw new KeyUnavailable(String(error)); // network, timeout, a body that is not JSON
    }
    if (key !== null && key.length !== 32) {
      throw new KeyUnavailable(`the hub sent a ${key.length}-byte key`);
    }
    if (this.byId.size >= KEY_LIMIT) {
      this.byId.clear();
      this.customerOf.clear();
    }
    this.byId.set(keyId, key);
    return key;
  }

  /** Drop the keys of `customers` (deleted); how many were held. */
  forget(customers) {
    let dropped = 0;
    for (const [keyId, customer] of this.customerOf) {
      if (!customers.includes(customer)) continue;
      this.customerOf.delete(keyId);
      this.byId.delete(keyId);
      dropped += 1;
    }
    return dropped;
  }
}

/** nonce (12 bytes) || ciphertext || tag (16 bytes), the key id as associated data. */
function openSealed(key, keyId, value) {
  if (value.length < NONCE_BYTES + TAG_BYTES) throw new Unopenable("sealed value too short");
  const decipher = createDecipheriv("aes-256-gcm", key, value.subarray(0, NONCE_BYTES), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(Buffer.from(keyId, "utf8"));
  decipher.setAuthTag(value.subarray(value.length - TAG_BYTES));
  try {
    const body = value.subarray(NONCE_BYTES, value.length - TAG_BYTES);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    throw new Unopenable("sealed value does not open with its key (altered?)");
  }
}

/** What a department's system would do with its events; here it prints and counts them. */
class Department {
  constructor(name, keys) {
    this.name = name;
    this.keys = keys;
    this.seen = new Set(); // recent ce_ids, oldest first (a Set keeps insertion order)
    this.held = new Map(); // events held per customer id
  }

  /** Process one record; return its line (throws KeyUnavailable: not processed, try again). */
  async handle(topic, partition, message) {
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
    let raw = message.value;
    let keyId = "";
    if (headers["content-type"] === SEALED_CONTENT_TYPE) {
      keyId = headers[KEY_ID_HEADER] ?? "";
      try {
        raw = await this.open(headers, keyId, raw);
      } catch (error) {
        if (!(error instanceof Unopenable)) throw error;
        return `unopenable ${where} ce_id=${ceId} ce_type=${ceType}: ${error.message}, skipped`;
      }
      if (raw === null) {
        this.remember(ceId);
        return (
          `erased ce_id=${ceId} ce_type=${ceType} key_id=${keyId}: the record's` +
          ` customer was erased, skipped (${where})`
        );
      }
    }
    let value;
    try {
      value = JSON.parse(text(raw));
    } catch (error) {
      return `undecodable ${where} ce_type=${ceType}: ${error.message}`;
    }
    if (keyId && typeof value?.customer_id === "string") {
      this.keys.customerOf.set(keyId, value.customer_id); // dropped on its deletion
    }
    let line;
    if (ceType === ROUTED_TYPE) line = this.routed(ceId, value);
    else if (ceType === CUSTOMER_TYPE) line = this.customer(ceId, value);
    else line = `unknown ce_type=${JSON.stringify(ceType)} ce_id=${ceId}`;
    this.remember(ceId);
    return `${line} (${where}, ce_source=${headers.ce_source ?? ""})`;
  }

  /** A sealed value's plaintext; null when its customer was erased. */
  async open(headers, keyId, value) {
    const scheme = headers[SCHEME_HEADER] ?? "";
    if (scheme !== "customer") {
      throw new Unopenable(`${SCHEME_HEADER}=${JSON.stringify(scheme)}: not a customer key`);
    }
    if (!KEY_ID.test(keyId)) {
      // never ask the hub about anything else
      throw new Unopenable(`${KEY_ID_HEADER}=${JSON.stringify(keyId)}: not a key id`);
    }
    const key = await this.keys.get(keyId);
    return key === null ? null : openSealed(key, keyId, Buffer.from(value));
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
      const dropped = this.keys.forget([customer, ...merged]); // its records must not open here
      return (
        `customer.deleted ce_id=${ceId} customer=${customer}` +
        ` aliases=${merged.join(",") || "-"}: forgot ${forgotten} event(s), ${dropped} key(s)`
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
  const department = new Department(config.department, new Keys(config.apiUrl, config.token));
  let count = 0;
  let stopping = false; // from here on, records are left uncommitted
  let finish;
  const finished = new Promise((resolve, reject) => {
    finish = (error) => {
      stopping = true;
      if (error) reject(error);
      else resolve();
    };
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
    eachMessage: async ({ topic, partition, message, heartbeat }) => {
      if (stopping) return; // left uncommitted
      let line;
      for (let backoff = BACKOFF_FIRST_MS; line === undefined; ) {
        try {
          line = await department.handle(topic, partition, message);
        } catch (error) {
          const where = `${topic}[${partition}]@${message.offset}`;
          if (error instanceof KeyRefused) {
            finish(new Error(`stopping at ${where}, not committed: ${error.message}`));
            return;
          }
          if (!(error instanceof KeyUnavailable)) throw error;
          // Not processed: try again after a pause, heartbeating so the group keeps us
          console.error(`key for ${where}: ${error.message}; again in ${backoff} ms`);
          await sleep(backoff);
          backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
          if (stopping) return;
          await heartbeat();
        }
      }
      console.log(line);
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

"""Generate the committed AsyncAPI 3.0 document of omnihub's topics: ``python -m schemas.asyncapi``
(``make schemas`` and ``python -m schemas.jsonschema`` regenerate it too).

Everything comes from ``schemas.topics.ALL_TOPICS`` (channels, partitions, keys, ``ce_type``),
``schemas.cloudevents`` (the Kafka headers) and the JSON Schemas ``schemas.jsonschema`` renders
(the payloads). A model's JSON Schema is taken as rendered, its ``$defs`` moved to
``components/schemas`` (one entry per pydantic model or enum, shared by every message that uses
it) and its ``#/$defs/X`` references pointed there; nothing else is changed. The document is
deterministic: sorted keys, no timestamps, no anchors.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from schemas.cloudevents import (
    CONTENT_TYPE,
    ERROR_HEADER,
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_TOPIC_HEADER,
    ORIGINAL_TYPE_HEADER,
    SPECVERSION,
    STAGE_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    ce_headers,
)
from schemas.events import SCHEMA_VERSION
from schemas.jsonschema import MODELS, render
from schemas.sealing import (
    EPHEMERAL_HEADER,
    KEY_ID_HEADER,
    SCHEME_HEADER,
    SEALED_CONTENT_TYPE,
    SEALED_TYPE_HEADER,
)
from schemas.topics import (
    ALL_TOPICS,
    CUSTOMERS,
    DEADLETTER,
    INTERACTIONS,
    OUTBOUND,
    PREFIX,
    ROUTED,
    SESSIONS,
    STAGED,
    UNIFIED,
    TopicSpec,
)

PATH = Path(__file__).parent / "asyncapi.yaml"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"
SERVER = "kafka"

Json = dict[str, Any]

#: Message ids are ``ce_type`` less this prefix, e.g. ``routed.v1``.
_CE_TYPE_PREFIX = "com.omnihub."

#: Key schemas: keys are UTF-8 strings; these key descriptions (``TopicSpec.key``) are UUIDs.
_UUID_KEYS = {"customer id", "command id"}

_DEPARTMENT_TOPICS = {spec.name for spec in ROUTED.values()}
#: Topics whose values are sealed with their customer's key (schemas/sealing.py).
_CUSTOMER_SEALED = _DEPARTMENT_TOPICS | {OUTBOUND.name, SESSIONS.name, CUSTOMERS.name}
#: Topics of raw records, sealed with their period's key.
_PERIOD_SEALED = {INTERACTIONS.name, UNIFIED.name, STAGED.name}
_SEALED_TOPICS = _CUSTOMER_SEALED | _PERIOD_SEALED
_CUSTOMER_SEALED_TYPE = (
    f"{SEALED_CONTENT_TYPE} for a value sealed with its customer's key; {CONTENT_TYPE} for"
    " plain ones (a department topic's customer.deleted tombstone, records from before sealing)"
)
_PERIOD_SEALED_TYPE = (
    f"{SEALED_CONTENT_TYPE} for a value sealed with its period's key (what the hub publishes);"
    f" {CONTENT_TYPE} for plain ones (an import's, records from before sealing), which the hub"
    " reads too"
)

_CE_DESCRIPTIONS = {
    "ce_specversion": "CloudEvents spec version",
    "ce_id": "the event id",
    "ce_type": "the topic's event type",
    "ce_source": (
        "the component that published the record: channels/<adapter>, services/api,"
        " services/processors, services/dispatcher, services/privacy, services/console"
    ),
    "content-type": "media type of the value",
    "ce_time": (
        "when the record was made (ISO 8601; a batch's routed records share one): set by the"
        " hub on every record it publishes; for when the event happened read the payload"
    ),
}

#: The CloudEvents distributed-tracing extension: optional on every topic.
_TRACE_DESCRIPTIONS = {
    TRACEPARENT_HEADER: (
        "W3C Trace Context traceparent (version-traceid-parentid-flags, e.g."
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01), CloudEvents distributed"
        " tracing extension: the trace of the request that led to this record, present when"
        " that request came with a traceparent header or the hub exports traces; with tracing"
        " off the hub copies it on unchanged, on it names the span of the stage that made the"
        " record. Continue it in your consumer's spans"
    ),
    TRACESTATE_HEADER: (
        "W3C Trace Context tracestate that goes with ce_traceparent (vendor key=value list),"
        " when there is one"
    ),
}

#: What a sealed record names (department topics; crypto-shredding, schemas/sealing.py).
_SEAL_DESCRIPTIONS = {
    SCHEME_HEADER: "customer: the value is sealed with the customer's key",
    KEY_ID_HEADER: (
        "the key's id: GET /v1/keys/{key_id} (scope keys:read) answers the AES-256-GCM key,"
        " 404 once the customer was erased"
    ),
    SEALED_TYPE_HEADER: "the media type of the opened value: application/json",
}
_PERIOD_SEAL_DESCRIPTIONS = {
    SCHEME_HEADER: (
        "period: the value is sealed with the period's public key (X25519, then AES-256-GCM);"
        " only the hub, holding the private key until OMNIHUB_RAW_RECORD_DAYS after the"
        " period, opens it"
    ),
    KEY_ID_HEADER: "the period (a UTC day, YYYY-MM-DD) whose key sealed it",
    EPHEMERAL_HEADER: "the sender's X25519 public key (base64), from which the data key derives",
    SEALED_TYPE_HEADER: "the media type of the opened value: application/json",
}

_DEADLETTER_HEADERS = {
    ERROR_HEADER: "why the record could not be used (pydantic's errors, at most 4000 characters)",
    STAGE_HEADER: "the stage that refused it, e.g. unify, project, delivery, dispatch",
    ORIGIN_TOPIC_HEADER: "the topic it came from (http:<method> <url> for a refused request)",
    ORIGIN_PARTITION_HEADER: "its partition (-1 for a refused request)",
    ORIGIN_OFFSET_HEADER: "its offset (-1 for a refused request)",
    ORIGINAL_TYPE_HEADER: "the original record's ce_type (empty when it had none)",
}

_OPERATIONS: dict[str, tuple[str, str]] = {
    # topic -> (action of a client application, what it is for)
    f"{PREFIX}.interactions.v1": (
        "receive",
        "Read every interaction as the channels normalised it (to add one, POST"
        " /v1/interactions). Its customer is not resolved yet: departments read their routed"
        " topic instead.",
    ),
    UNIFIED.name: (
        "send",
        "Publish interactions whose customer is already known (a replay, an import): the"
        " processors' project agent writes them into the timeline and routes them.",
    ),
    f"{PREFIX}.outbound.v1": (
        "receive",
        "Observe the commands to send a message to a customer (queued through POST"
        " /v1/customers/{id}/messages and the console; the dispatcher sends them). Values are"
        " sealed with the customer's key, opened as on the department topics.",
    ),
    f"{PREFIX}.delivery.v1": (
        "receive",
        "Follow the delivery states of outbound messages, in order per command; states only"
        " move forward (a lower-ranked state never replaces a higher one).",
    ),
    CUSTOMERS.name: (
        "receive",
        "Apply customer lifecycle changes to what you hold: customer.merged (merged_ids now"
        " answer as aliases of customer_id), customer.split (new_ids were cut out of"
        " customer_id; merges and splits are sealed with the customer's key, opened as on the"
        " department topics), customer.deleted (a plain tombstone carried as a value: delete"
        " everything held about customer_id and its merged_ids). Every department consumer must"
        " handle customer.deleted.",
    ),
    DEADLETTER.name: (
        "receive",
        "Watch the records the hub could not use: the original key, value bytes and headers,"
        " the reason in x-omnihub-* headers.",
    ),
}

_ROUTED_OPERATION = (
    "A department's consumers (their own consumer group) read the interactions routed to it."
    " Each inbound interaction is published once on its primary department's topic and once on"
    " each department it is copied to (routing.copy_of names the primary). Delivery is at least"
    " once: deduplicate on ce_id (the event_id; a primary and its copies share it). Records of"
    " one customer stay in one partition, in order. Commit offsets after processing. Values"
    f" are sealed (content-type {SEALED_CONTENT_TYPE}): 12 bytes of nonce, then AES-256-GCM"
    " ciphertext and tag, the key id's UTF-8 bytes as associated data; the key comes from GET"
    " /v1/keys/{key_id} (scope keys:read). An erased customer's tombstone, customer.deleted"
    f" (ce_type {CUSTOMERS.ce_type}, plain JSON, as on {CUSTOMERS.name}), arrives on every"
    " department topic: delete what you hold about customer_id and its merged_ids and forget"
    " their keys; their keys answer 404 from then on."
    " Marketing never receives an event from a customer who withdrew marketing consent, except"
    " the opt-out message itself (tag opt-out)."
)

_INFO = (
    "The Kafka topics of omnihub, the event-driven omnichannel CRM hub, as a client"
    " application (a department's consumer, an integration) uses them.\n\n"
    "Values are the UTF-8 JSON of the record's model (pydantic model_dump_json): every model"
    f" carries schema_version {SCHEMA_VERSION} and forbids unknown fields. Every record the hub"
    " publishes carries the event's CloudEvents attributes as Kafka headers (binary mode:"
    " ce_specversion, ce_id, ce_type, ce_source, content-type, ce_time), and the distributed"
    " tracing extension's ce_traceparent (and ce_tracestate) when the event has a trace (W3C"
    " Trace Context, docs/operations.md#traces). Keys are UTF-8 strings;"
    " records of one key stay in one partition, in order. Delivery is at least once:"
    " deduplicate on ce_id.\n\n"
    "Generated from schemas/topics.py and the models' JSON Schemas (schemas/json/) by"
    " `make schemas` (python -m schemas.asyncapi); do not edit it by hand."
)


def _messages(roots: dict[str, str]) -> tuple[Json, dict[str, str]]:
    """``components/messages`` and the message id of each topic: its ``ce_type`` less the
    prefix (e.g. ``routed.v1``, shared by the departments' topics), unless the topics of one
    ``ce_type`` differ."""
    built: dict[str, list[tuple[TopicSpec, Json]]] = {}
    for spec in ALL_TOPICS:
        built.setdefault(spec.ce_type, []).append((spec, _message(spec, roots)))
    messages: Json = {}
    ids: dict[str, str] = {}
    for ce_type, found in built.items():
        shared = all(message == found[0][1] for _, message in found)
        for spec, message in found:
            name = ce_type.removeprefix(_CE_TYPE_PREFIX)
            if not shared:  # the topics of one ce_type differ (another key): one message each
                name = f"{name}.{spec.name.removeprefix(PREFIX + '.')}"
            messages[name] = message
            ids[spec.name] = name
    return messages, ids


def operation_id(spec: TopicSpec) -> str | None:
    """The id of a client's operation on a topic, e.g. ``receive.omnihub.routed.finance.v1``;
    None for a topic only the hub's own components use."""
    action = _action(spec)
    return None if action is None else f"{action}.{spec.name}"


def _action(spec: TopicSpec) -> str | None:
    if spec.name in _DEPARTMENT_TOPICS:
        return "receive"
    known = _OPERATIONS.get(spec.name)
    return None if known is None else known[0]


def _schema_name(model: type[BaseModel]) -> str:
    """The name ``schemas.jsonschema`` renders a model's JSON Schema under."""
    names = [name for name, known in MODELS.items() if known is model]
    if len(names) != 1:
        raise ValueError(f"{model.__name__} is not one of schemas.jsonschema.MODELS")
    return names[0]


def _repoint(node: Any) -> Any:
    """A copy of a JSON Schema with ``#/$defs/X`` references pointed at components/schemas."""
    if isinstance(node, dict):
        return {
            key: (
                "#/components/schemas/" + value.removeprefix("#/$defs/")
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
                else _repoint(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_repoint(item) for item in node]
    return node


def _hoist(schemas: Json, name: str, schema: Json) -> None:
    """Add ``schema`` under ``name`` to ``schemas``; ValueError if a different one is there."""
    known = schemas.setdefault(name, schema)
    if known != schema:
        raise ValueError(f"two different JSON Schemas are named {name!r}")


def component_schemas() -> tuple[Json, dict[str, str]]:
    """``components/schemas`` built from the rendered JSON Schemas, and the component name
    of each JSON Schema's root (e.g. ``routed.v1`` -> ``RoutedEvent``)."""
    schemas: Json = {}
    roots: dict[str, str] = {}
    for name, model in MODELS.items():
        rendered: Json = json.loads(render(model, name))
        for def_name, definition in rendered.pop("$defs", {}).items():
            _hoist(schemas, def_name, _repoint(definition))
        del rendered["$schema"], rendered["$id"]
        root = str(rendered["title"])
        _hoist(schemas, root, _repoint(rendered))
        roots[name] = root
    return schemas, roots


def _string(description: str, **more: Any) -> Json:
    return {"type": "string", "description": description, **more}


def _ce_header_schema(spec: TopicSpec) -> Json:
    """The CloudEvents binary-mode headers the hub puts on a topic's records."""
    required = [name for name, _ in ce_headers(event_id="e", ce_type=spec.ce_type, source="s")]
    every = ce_headers(
        event_id="e", ce_type=spec.ce_type, source="s", time=datetime(2000, 1, 1, tzinfo=UTC)
    )
    fields = spec.model.model_fields if spec.model else {}
    id_field = next(
        (f for f in ("event_id", "command_id", "stage_id", "period") if f in fields), "command_id"
    )
    properties: Json = {}
    for name, _ in every:
        schema = _string(_CE_DESCRIPTIONS[name])
        if name == "ce_specversion":
            schema["const"] = SPECVERSION
        elif name == "ce_id":
            schema["description"] = f"the event id: the payload's {id_field}"
        elif name == "ce_type":
            schema["const"] = spec.ce_type
        elif name == "content-type" and spec.name in _SEALED_TOPICS:
            schema["enum"] = [SEALED_CONTENT_TYPE, CONTENT_TYPE]
            schema["description"] = (
                _PERIOD_SEALED_TYPE if spec.name in _PERIOD_SEALED else _CUSTOMER_SEALED_TYPE
            )
        elif name == "content-type":
            schema["const"] = CONTENT_TYPE
        elif name == "ce_time":
            schema["format"] = "date-time"
        properties[name] = schema
    properties.update({name: _string(text) for name, text in _TRACE_DESCRIPTIONS.items()})
    if spec.name in _CUSTOMER_SEALED:
        properties.update({name: _string(text) for name, text in _SEAL_DESCRIPTIONS.items()})
    elif spec.name in _PERIOD_SEALED:
        seals = _PERIOD_SEAL_DESCRIPTIONS
        properties.update({name: _string(text) for name, text in seals.items()})
    return {
        "type": "object",
        "description": "CloudEvents binary-mode Kafka headers (UTF-8 values)",
        "required": sorted(required),
        "properties": properties,
    }


def _deadletter_header_schema() -> Json:
    """A dead letter keeps the original's headers, ce_type replaced, plus the reason."""
    properties: Json = {name: _string(text) for name, text in _DEADLETTER_HEADERS.items()}
    properties["ce_type"] = _string(_CE_DESCRIPTIONS["ce_type"], const=DEADLETTER.ce_type)
    kept = ("ce_specversion", "ce_id", "ce_source", "content-type", "ce_time", *_TRACE_DESCRIPTIONS)
    for name in (*kept, *_PERIOD_SEAL_DESCRIPTIONS):
        properties[name] = _string(f"the original record's {name} header, when it had one")
    return {
        "type": "object",
        "description": (
            "the original record's headers (its x-omnihub-* ones dropped but its seal's,"
            " ce_type replaced), plus why it could not be used; a refused request's body is"
            " sealed with the period's key"
        ),
        "required": sorted(["ce_type", *_DEADLETTER_HEADERS]),
        "properties": properties,
    }


def _key_schema(spec: TopicSpec) -> Json:
    schema = _string(f"the record key (UTF-8): {spec.key}")
    if spec.key in _UUID_KEYS:
        schema["format"] = "uuid"
    return schema


def _kafka_message_binding(spec: TopicSpec) -> Json:
    return {"kafka": {"bindingVersion": KAFKA_BINDING, "key": _key_schema(spec)}}


def _message(spec: TopicSpec, roots: dict[str, str]) -> Json:
    """The message of a topic's records."""
    if spec.model is None:
        return {
            "name": "DeadLetter",
            "title": "A record that could not be used",
            "contentType": "application/octet-stream",
            "headers": _deadletter_header_schema(),
            "payload": {
                "description": (
                    "the original record's value bytes, unchanged (empty when it had none);"
                    " its content-type header, when kept, says what they are"
                )
            },
            "bindings": _kafka_message_binding(spec),
        }
    name = _schema_name(spec.model)
    doc = (spec.model.__doc__ or "").strip()
    return {
        "name": spec.model.__name__,
        "title": doc.splitlines()[0] if doc else spec.model.__name__,
        "description": (
            f"Payload: the JSON of schemas.events.{spec.model.__name__}; its JSON Schema is"
            f" schemas/json/{name}.schema.json."
        ),
        "contentType": CONTENT_TYPE,
        "headers": _ce_header_schema(spec),
        "payload": {"$ref": f"#/components/schemas/{roots[name]}"},
        "bindings": _kafka_message_binding(spec),
        "x-omnihub-json-schema": f"https://omnihub.dev/schemas/{name}.schema.json",
    }


def _channel(spec: TopicSpec, message: str) -> Json:
    return {
        "address": spec.name,
        "description": f"{spec.description[:1].upper()}{spec.description[1:]}.",
        "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        "bindings": {
            "kafka": {
                "bindingVersion": KAFKA_BINDING,
                "topic": spec.name,
                "partitions": spec.partitions,
            }
        },
        "x-omnihub-key": spec.key,
        "x-omnihub-ce-type": spec.ce_type,
    }


def _operation(spec: TopicSpec, message: str) -> Json:
    department = spec.name in _DEPARTMENT_TOPICS
    action = _action(spec)
    operation: Json = {
        "action": action,
        "channel": {"$ref": f"#/channels/{spec.name}"},
        "messages": [{"$ref": f"#/channels/{spec.name}/messages/{message}"}],
        "summary": f"{'Consume' if action == 'receive' else 'Publish to'} {spec.name}",
        "description": _ROUTED_OPERATION if department else _OPERATIONS[spec.name][1],
    }
    if department:
        operation["tags"] = [{"name": "department"}]
    return operation


def document() -> Json:
    """The AsyncAPI document as a JSON-compatible dict."""
    schemas, roots = component_schemas()
    messages, ids = _messages(roots)
    operations = {
        op: _operation(spec, ids[spec.name])
        for spec in ALL_TOPICS
        if (op := operation_id(spec)) is not None
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:omnihub:topics",
        "info": {
            "title": "omnihub topics",
            "version": f"{SCHEMA_VERSION}.0.0",
            "description": _INFO,
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            SERVER: {
                "host": "{bootstrap}",
                "protocol": "kafka",
                "description": "The hub's Kafka cluster (KAFKA_BOOTSTRAP_SERVERS).",
                "variables": {
                    "bootstrap": {
                        "default": "kafka:9092",
                        "description": "bootstrap servers; kafka:9092 in docker-compose.yml",
                    }
                },
            }
        },
        "channels": {spec.name: _channel(spec, ids[spec.name]) for spec in ALL_TOPICS},
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no type hints
    """Safe YAML with no anchors and aliases: every node is written out where it is."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def rendered() -> str:
    """The YAML text of the document, stable across runs."""
    return str(
        yaml.dump(
            document(),
            Dumper=_Dumper,
            sort_keys=True,
            allow_unicode=True,
            default_flow_style=False,
            width=100,
        )
    )


def write() -> bool:
    """Write the document if it changed; True when it did."""
    text = rendered()
    if PATH.exists() and PATH.read_text() == text:
        return False
    PATH.write_text(text)
    return True


def main() -> int:
    """Write the document; print whether it changed."""
    if write():
        print(f"wrote {PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

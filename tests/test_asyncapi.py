"""The AsyncAPI document of the topics: fresh, complete (a channel per topic, a receive
operation per department), its payloads the models' JSON Schemas, its headers those the hub
puts on records, and valid against the official AsyncAPI 3.0 JSON Schema (npm's
@asyncapi/specs, pinned in tests/asyncapi-spec/package-lock.json)."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import jsonschema
import pytest
import yaml

from schemas import (
    CustomerEvent,
    DeliveryStatus,
    Interaction,
    OutboundCommand,
    PeriodKey,
    RoutedEvent,
    StagedInput,
    UnifiedEvent,
)
from schemas.asyncapi import PATH, document, operation_id, rendered
from schemas.cloudevents import header_map
from schemas.jsonschema import MODELS
from schemas.jsonschema import rendered as json_schemas
from schemas.sealing import PeriodSealer, Seal, new_period_keypair, without_content_type
from schemas.topics import ALL_TOPICS, DEADLETTER, INTERACTIONS, OUTBOUND, ROUTED, TopicSpec
from services.bus.deadletter import dead_letter
from services.bus.records import to_record
from tests.support import ROOT

SPEC_PACKAGE = ROOT / "tests" / "asyncapi-spec"
SPEC = SPEC_PACKAGE / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"
DOC = document()


def _resolve(ref: str) -> Any:
    """What a local reference points at, following references to references."""
    node: Any = DOC
    for part in ref.removeprefix("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if isinstance(node, dict) and set(node) == {"$ref"}:
        return _resolve(node["$ref"])
    return node


def _message(spec: TopicSpec) -> dict[str, Any]:
    (ref,) = DOC["channels"][spec.name]["messages"].values()
    message: dict[str, Any] = _resolve(ref["$ref"])
    return message


def _standalone(root: str) -> dict[str, Any]:
    """A component schema as a JSON Schema of its own: the components it references
    (transitively) put back into ``$defs``, the references pointed there."""
    schemas = DOC["components"]["schemas"]
    defs: dict[str, Any] = {}

    def repoint(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref":
                    name = value.removeprefix("#/components/schemas/")
                    assert name != value, f"unexpected reference {value}"
                    if name not in defs and name != root:
                        defs[name] = {}
                        defs[name] = repoint(schemas[name])
                    out[key] = f"#/$defs/{name}"
                else:
                    out[key] = repoint(value)
            return out
        if isinstance(node, list):
            return [repoint(item) for item in node]
        return node

    schema: dict[str, Any] = repoint(copy.deepcopy(schemas[root]))
    if defs:
        schema["$defs"] = defs
    return schema


def test_committed_document_is_fresh() -> None:
    assert PATH.exists() and PATH.read_text() == rendered(), (
        "schemas/asyncapi.yaml is stale: run `make schemas` and commit"
    )


def test_the_yaml_reads_back_as_the_document() -> None:
    assert yaml.safe_load(rendered()) == DOC  # no value YAML would read as another type
    assert "&id" not in rendered()  # no anchors


def test_every_topic_has_a_channel_with_its_partitions_and_key() -> None:
    assert set(DOC["channels"]) == {spec.name for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        channel = DOC["channels"][spec.name]
        assert channel["address"] == spec.name
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions
        assert channel["bindings"]["kafka"]["topic"] == spec.name
        assert channel["x-omnihub-key"] == spec.key
        message = _message(spec)
        assert spec.key in message["bindings"]["kafka"]["key"]["description"]
        assert message["headers"]["properties"]["ce_type"]["const"] == spec.ce_type


def test_every_department_topic_has_a_receive_operation() -> None:
    for department, spec in ROUTED.items():
        operation = DOC["operations"][operation_id(spec)]
        assert operation["action"] == "receive", department
        assert operation["channel"] == {"$ref": f"#/channels/{spec.name}"}
        (message,) = operation["messages"]
        assert _resolve(message["$ref"]) is _message(spec)  # one of the channel's messages
        assert message["$ref"].startswith(f"#/channels/{spec.name}/messages/")
    for operation in DOC["operations"].values():  # every operation points at a channel
        assert _resolve(operation["channel"]["$ref"]) in DOC["channels"].values()


def test_payloads_are_the_models_json_schemas() -> None:
    expected = {name: json.loads(text) for name, text in json_schemas().items()}
    covered = set()
    for spec in ALL_TOPICS:
        message = _message(spec)
        if spec.model is None:
            assert spec is DEADLETTER
            continue
        (name,) = [n for n, model in MODELS.items() if model is spec.model]
        root = message["payload"]["$ref"].removeprefix("#/components/schemas/")
        schema = _standalone(root)
        want = dict(expected[f"{name}.schema.json"])
        assert message["x-omnihub-json-schema"] == want.pop("$id")
        want.pop("$schema")
        assert schema == want, name
        covered.add(name)
    assert covered == set(MODELS)


def _examples() -> dict[str, Any]:
    when = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    customer = uuid.uuid4()
    interaction = Interaction.create(
        channel="email",
        direction="inbound",
        kind="message",
        identities=[{"type": "email", "value": "a@example.com"}],
        provider_message_id=f"asyncapi-{uuid.uuid4()}",
        text="Bonjour, ma facture",
        received_at=when,
    )
    routing = {
        "department": "finance",
        "rule_id": "r",
        "ruleset_version": "default/1",
        "reason": "test",
    }
    command = OutboundCommand(
        customer_id=customer,
        channel="sms",
        to={"type": "phone", "value": "+33612345678"},
        text="hi",
    )
    return {
        "interaction.v1": interaction,
        "unified.v1": UnifiedEvent(
            event_id=interaction.event_id,
            customer_id=customer,
            unified_at=when,
            interaction=interaction,
        ),
        "routed.v1": RoutedEvent(
            event_id=interaction.event_id,
            customer_id=customer,
            routed_at=when,
            routing=routing,
            interaction=interaction,
        ),
        "outbound.v1": command,
        "delivery.v1": DeliveryStatus(
            command_id=command.command_id, channel="sms", state="sent", occurred_at=when
        ),
        "customer.v1": CustomerEvent(type="customer.deleted", customer_id=customer),
        "periodkey.v1": PeriodKey(
            period="2026-12-07", public_key=base64.b64encode(new_period_keypair()[1]).decode()
        ),
        "staged.v1": StagedInput(
            adapter="email",
            via="smtp",
            order_key="a@example.com",
            meta={"recipients": '["support@acme.example"]'},
            payload=b"From: a@example.com\r\n\r\nBonjour\r\n",
        ),
    }


def test_records_made_by_the_hub_match_their_message() -> None:
    """A record ``to_record`` makes for each topic: headers valid against the message's header
    schema, value valid against its payload schema; a dead letter against its own."""
    examples = _examples()
    for spec in ALL_TOPICS:
        message = _message(spec)
        if spec.model is None:
            original = to_record(ROUTED[next(iter(ROUTED))], examples["routed.v1"], "e", "s")
            record = dead_letter(
                topic=original.topic,
                partition=3,
                offset=42,
                key=original.key,
                value=b"{not json",
                headers=original.headers,
                error="invalid JSON",
                stage="unify",
            )
        else:
            (name,) = [n for n, model in MODELS.items() if model is spec.model]
            model = examples[name]
            record = to_record(spec, model, str(uuid.uuid4()), "services/processors")
            payload = _standalone(message["payload"]["$ref"].rsplit("/", 1)[1])
            jsonschema.Draft7Validator(payload).validate(json.loads(record.value))
        headers = dict(header_map(record.headers))
        jsonschema.Draft7Validator(message["headers"]).validate(headers)
        assert record.topic == spec.name
        if spec in (INTERACTIONS, OUTBOUND):  # sealed as the hub publishes them
            sealer = PeriodSealer.for_public_key("2026-12-07", new_period_keypair()[1])
            seal = sealer.seal(record.value)[1] if spec is INTERACTIONS else Seal("customer", "k")
            sealed = dict(header_map(without_content_type(record.headers) + seal.headers()))
            jsonschema.Draft7Validator(message["headers"]).validate(sealed)


@pytest.fixture(scope="module")
def official_schema() -> dict[str, Any]:
    """The AsyncAPI 3.0.0 JSON Schema of @asyncapi/specs, installed with ``npm ci``."""
    if not SPEC.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip(
                "npm is not installed: cannot install @asyncapi/specs (the official schema)"
            )
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=SPEC_PACKAGE,
            check=True,
            capture_output=True,
            timeout=300,
        )
    schema: dict[str, Any] = json.loads(SPEC.read_text())
    return schema


def test_document_is_valid_asyncapi_3(official_schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(official_schema)
    errors = sorted(validator.iter_errors(DOC), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in errors[:10]
    )
    # and a broken document is refused (the validator does check)
    broken = copy.deepcopy(DOC)
    broken["channels"][ROUTED[next(iter(ROUTED))].name]["bindings"]["kafka"]["partitions"] = 0
    assert not validator.is_valid(broken)

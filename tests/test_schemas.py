"""The event contract: normalisation, deterministic ids, versioned models, fresh JSON Schemas."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from schemas import Channel, DeliveryState, Identity, IdentityType, Interaction, UnifiedEvent
from schemas.cloudevents import ce_headers, header_map, with_event_id
from schemas.ids import event_id_for
from schemas.jsonschema import SCHEMA_DIR, rendered
from schemas.topics import ALL_TOPICS, ROUTED, Department


def test_email_is_lowercased_and_checked() -> None:
    assert Identity(type="email", value="  Alice@Example.COM ").value == "alice@example.com"
    with pytest.raises(ValidationError, match="invalid email"):
        Identity(type="email", value="not-an-email")


@pytest.mark.parametrize(
    "raw", ["+33 6 12 34 56 78", "+33612345678", "0033 6 12 34 56 78", "+33 (0)6 12-34-56-78"]
)
def test_phone_numbers_normalise_to_e164(raw: str) -> None:
    assert Identity(type="phone", value=raw).value == "+33612345678"


def test_national_phone_needs_a_region() -> None:
    with pytest.raises(ValidationError, match="invalid phone"):
        Identity(type="phone", value="06 12 34 56 78")
    identity = Identity.model_validate(
        {"type": "phone", "value": "06 12 34 56 78"}, context={"default_region": "FR"}
    )
    assert identity.value == "+33612345678"


def test_social_ids_are_scoped_by_account() -> None:
    with pytest.raises(ValidationError, match="need a scope"):
        Identity(type="facebook", value="1254459154682919")
    page_a = Identity(type="facebook", scope="page-1", value="1254459154682919")
    page_b = Identity(type="facebook", scope="page-2", value="1254459154682919")
    assert page_a.key != page_b.key
    assert page_a.key == "facebook:page-1:1254459154682919"


def test_identity_parse_round_trips_keys() -> None:
    assert Identity.parse("email:Bob@Example.com").key == "email::bob@example.com"
    assert Identity.parse("telegram:bot42:1111").scope == "bot42"
    assert Identity.parse("user_id:crm:77").value == "crm:77"


def test_event_id_is_deterministic_per_channel_and_provider_id() -> None:
    first = Interaction.create(
        channel="sms",
        direction="inbound",
        kind="message",
        identities=[{"type": "phone", "value": "+14155550100"}],
        provider_message_id="SM123",
    )
    retry = Interaction.create(
        channel="sms",
        direction="inbound",
        kind="message",
        identities=[{"type": "phone", "value": "+14155550100"}],
        provider_message_id="SM123",
    )
    other_channel = event_id_for("whatsapp", "SM123")
    assert first.event_id == retry.event_id == event_id_for("sms", "SM123")
    assert first.event_id != other_channel
    assert first.received_at.tzinfo is not None


def test_timestamps_must_carry_a_time_zone() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        Interaction.create(
            channel="api",
            direction="inbound",
            kind="note",
            identities=[{"type": "email", "value": "a@example.com"}],
            provider_message_id="n1",
            occurred_at=datetime(2026, 1, 1, 9, 0),
        )


def test_unknown_fields_are_rejected() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        Interaction.create(
            channel="api",
            direction="inbound",
            kind="note",
            colour="red",
            identities=[{"type": "email", "value": "a@example.com"}],
            provider_message_id="n2",
        )


def test_unified_event_round_trips_through_json() -> None:
    interaction = Interaction.create(
        channel=Channel.EMAIL,
        direction="inbound",
        kind="message",
        subject="Re: order",
        identities=[{"type": "email", "value": "a@example.com"}],
        provider_message_id="<m@x>",
        attachments=[{"name": "facture.pdf", "content_type": "application/pdf", "size": 1234}],
    )
    unified = UnifiedEvent(
        event_id=interaction.event_id,
        customer_id=uuid.uuid4(),
        unified_at=interaction.received_at,
        interaction=interaction,
    )
    again = UnifiedEvent.model_validate_json(unified.model_dump_json())
    assert again == unified
    assert unified.partition_key == str(unified.customer_id).encode()


def test_delivery_states_only_move_forward() -> None:
    order = [
        DeliveryState.QUEUED,
        DeliveryState.SENDING,
        DeliveryState.SENT,
        DeliveryState.DELIVERED,
        DeliveryState.READ,
    ]
    assert [s.rank for s in order] == sorted(s.rank for s in order)
    assert DeliveryState.FAILED.rank > DeliveryState.SENT.rank


def test_committed_json_schemas_are_fresh() -> None:
    expected = rendered()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.schema.json")}
    stale = [name for name, text in expected.items() if on_disk.get(name) != text]
    assert not stale, f"stale JSON Schemas {stale}: run `make schemas` and commit"
    assert set(on_disk) == set(expected)
    interaction = json.loads(expected["interaction.v1.schema.json"])
    assert "event_id" in interaction["required"]


def test_topics_are_defined_once_with_unique_names() -> None:
    names = [t.name for t in ALL_TOPICS]
    assert len(names) == len(set(names))
    assert set(ROUTED) == set(Department)
    assert ROUTED[Department.AFTER_SALES].name == "omnihub.routed.after_sales.v1"


def test_cloudevents_headers_are_binary_mode() -> None:
    headers = header_map(
        ce_headers(event_id="e1", ce_type="com.omnihub.interaction.v1", source="channels/api")
    )
    assert headers == {
        "ce_specversion": "1.0",
        "ce_id": "e1",
        "ce_type": "com.omnihub.interaction.v1",
        "ce_source": "channels/api",
        "content-type": "application/json",
    }


def test_a_batch_shares_headers_but_not_their_event_id() -> None:
    when = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    shared = ce_headers(event_id="", ce_type="t", source="s", time=when)
    first, second = with_event_id(shared, "e1"), with_event_id(shared, "e2")
    assert first == ce_headers(event_id="e1", ce_type="t", source="s", time=when)
    assert header_map(second)["ce_id"] == "e2"
    assert header_map(shared)["ce_id"] == ""  # the template itself is left as it was
    moved = list(reversed(shared))  # headers not laid out by ce_headers: found by name
    assert with_event_id(moved, "e3") == list(
        reversed(ce_headers(event_id="e3", ce_type="t", source="s", time=when))
    )


def test_identity_types_cover_every_channel_kind() -> None:
    assert {t.value for t in IdentityType} >= {
        "email",
        "phone",
        "webchat_visitor",
        "user_id",
        "facebook",
        "instagram",
        "whatsapp",
        "x",
        "telegram",
    }

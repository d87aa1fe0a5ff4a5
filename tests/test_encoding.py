"""Spliced JSON of routed events: byte for byte pydantic's, whatever the message holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from schemas import Department, Interaction, RoutedEvent, Routing, ThreadRef
from schemas.encoding import datetime_json, routed_event_json, with_language
from services.bench import data

ROUTING = Routing(
    department=Department.SALES,
    priority="high",
    tags=["quote", 'say "hi"'],
    rule_id="sales-quote",
    ruleset_version="2026-11",
    reason="rule sales-quote (line 12): text 'Angebot'~'angebot*'",
    confidence=0.875,
    language="de",
)


def tricky() -> list[Interaction]:
    """Messages built to trip a splice: the language key inside strings and attributes,
    quotes, escapes, non-Latin text, a thread and a declared language."""
    base = {
        "channel": "sms",
        "direction": "inbound",
        "kind": "message",
        "identities": [{"type": "phone", "value": "+33612345678"}],
    }
    return [
        Interaction.create(**base, provider_message_id="a", text='{"language":null,"x":1}'),
        Interaction.create(
            **base,
            provider_message_id="b",
            subject='"language":null,',
            text='Привет \\ "quoted" \u2028 tab\t',
            attributes={"language": None, "command_id": "x"},
        ),
        Interaction.create(
            **base,
            provider_message_id="c",
            thread=ThreadRef(id='"language":null,', reply_to="r"),
            text="ok",
        ),
        Interaction.create(**base, provider_message_id="d", text="bonjour", language="fr"),
        Interaction.create(
            **base,
            provider_message_id="e",
            occurred_at=datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2))),
        ),
    ]


def interactions() -> list[Interaction]:
    """The benchmark's made-up messages (every channel and language it has) and ``tricky``."""
    crowd = data.people(50, 0.3, 1)
    return [*data.events(200, crowd, 1, "encoding"), *tricky()]


@pytest.mark.parametrize("language", [None, "de"])
def test_spliced_routed_event_is_what_pydantic_writes(language: str | None) -> None:
    routed_at = datetime.now(UTC)
    for interaction in interactions():
        own = interaction.model_dump_json()
        sent, model = own, interaction
        if language and interaction.language is None:
            sent = with_language(own, language)
            model = interaction.model_copy(update={"language": language})
        customer = uuid.uuid4()
        spliced = routed_event_json(
            str(interaction.event_id),
            str(customer),
            datetime_json(routed_at),
            ROUTING.model_dump_json(),
            sent,
        )
        expected = RoutedEvent(
            event_id=interaction.event_id,
            customer_id=customer,
            routed_at=routed_at,
            routing=ROUTING,
            interaction=model,
        )
        assert spliced == expected.model_dump_json()
        assert RoutedEvent.model_validate_json(spliced) == expected


def test_language_is_set_on_the_interaction_not_in_its_text() -> None:
    first, second, third, *_ = tricky()
    for interaction in (first, second, third):
        changed = Interaction.model_validate_json(
            with_language(interaction.model_dump_json(), "en")
        )
        assert changed.language == "en"
        assert changed.text == interaction.text
        assert changed.subject == interaction.subject
        assert changed.attributes == interaction.attributes
        assert changed.thread == interaction.thread


def test_a_declared_language_is_not_overwritten() -> None:
    declared = tricky()[3]
    with pytest.raises(ValueError, match="already has a language"):
        with_language(declared.model_dump_json(), "en")


def test_timestamps_are_written_as_pydantic_writes_them() -> None:
    paris = datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    for value in (datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), paris):
        routed = RoutedEvent(
            event_id=uuid.uuid4(),
            customer_id=uuid.uuid4(),
            routed_at=value,
            routing=ROUTING,
            interaction=tricky()[0],
        )
        assert f'"routed_at":{datetime_json(value)},' in routed.model_dump_json()

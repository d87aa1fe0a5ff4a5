"""Synthetic but realistic traffic: N events over M customers, some known by several ids."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from schemas import Interaction

TEXTS = [
    ("en", "Hello, could you send me a quote for 40 office chairs and delivery to Leeds?"),
    ("en", "My invoice INV-2231 charges me twice for the same order, please refund one."),
    ("en", "The washing machine you delivered last week leaks water, I need a repair."),
    ("fr", "Bonjour, je voudrais un devis pour l'abonnement annuel de votre offre Pro."),
    ("fr", "Ma facture de mars est erronée, le prélèvement a été fait deux fois."),
    ("fr", "Le téléviseur acheté chez vous ne s'allume plus, il est encore sous garantie."),
    ("pt", "Bom dia, gostaria de saber o preço do plano empresarial para 20 usuários."),
    ("pt", "Recebi uma cobrança duplicada no cartão, preciso do reembolso."),
    ("de", "Guten Tag, meine Rechnung vom Mai ist falsch, bitte korrigieren Sie sie."),
    ("de", "Das Gerät ist defekt angekommen, ich möchte eine Reparatur oder Ersatz."),
    ("es", "Hola, quiero información sobre precios para comprar 10 licencias."),
    ("es", "El producto llegó roto, necesito una devolución o un cambio."),
    ("ru", "Здравствуйте, пришлите, пожалуйста, счёт на оплату за октябрь."),
    ("ru", "Товар пришёл сломанным, нужен ремонт по гарантии."),
]


@dataclass(frozen=True)
class Person:
    """A synthetic customer with one to three identities."""

    email: str
    phone: str | None


def people(count: int, multi_share: float, seed: int) -> list[Person]:
    """``count`` customers; ``multi_share`` of them also have a phone they write from."""
    rng = random.Random(seed)
    return [
        Person(
            email=f"bench-{seed}-{i}@example.com",
            phone=f"+336{rng.randrange(10**8):08d}" if rng.random() < multi_share else None,
        )
        for i in range(count)
    ]


def events(count: int, crowd: list[Person], seed: int, tag: str) -> list[Interaction]:
    """``count`` inbound interactions (~650 bytes of JSON each) from the crowd."""
    rng = random.Random(seed)
    base = datetime(2026, 11, 1, tzinfo=UTC)
    made = []
    for n in range(count):
        person = crowd[rng.randrange(len(crowd))]
        _, text = TEXTS[rng.randrange(len(TEXTS))]  # providers do not say the language
        text = f"{text} (ref. {rng.randrange(10**7):07d})"  # every text unique: nothing cached
        if person.phone and rng.random() < 0.5:
            ids = [{"type": "phone", "value": person.phone}]
            if rng.random() < 0.3:
                ids.append({"type": "email", "value": person.email})
            channel = "sms"
        else:
            ids = [{"type": "email", "value": person.email}]
            channel = "email"
        made.append(
            Interaction.create(
                channel=channel,
                direction="inbound",
                kind="message",
                identities=ids,
                text=text,
                subject=None if channel == "sms" else "Customer request",
                provider_message_id=f"{tag}-{n}",
                occurred_at=base + timedelta(seconds=n),
                source="bench",
            )
        )
    return made


def api_body(event: Interaction) -> bytes:
    """The POST /v1/interactions body of an event."""
    return event.model_dump_json(
        include={
            "channel",
            "direction",
            "kind",
            "identities",
            "text",
            "subject",
            "provider_message_id",
            "occurred_at",
        },
        exclude_none=True,
    ).encode()

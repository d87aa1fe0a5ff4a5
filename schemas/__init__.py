"""omnihub's event contract: pydantic models, topic names and partition keys. No I/O here."""

from schemas.events import (
    Attachment,
    Channel,
    DeadLetter,
    DeliveryState,
    DeliveryStatus,
    Department,
    Direction,
    Interaction,
    Kind,
    OutboundCommand,
    RoutedEvent,
    Routing,
    ThreadRef,
    UnifiedEvent,
)
from schemas.identities import Identity, IdentityType

__all__ = [
    "Attachment",
    "Channel",
    "DeadLetter",
    "DeliveryState",
    "DeliveryStatus",
    "Department",
    "Direction",
    "Identity",
    "IdentityType",
    "Interaction",
    "Kind",
    "OutboundCommand",
    "RoutedEvent",
    "Routing",
    "ThreadRef",
    "UnifiedEvent",
]

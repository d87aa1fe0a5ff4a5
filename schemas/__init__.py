"""omnihub's event contract: pydantic models, topic names and partition keys. No I/O here."""

from schemas.events import (
    Attachment,
    Channel,
    ConsentChange,
    CustomerEvent,
    DeadLetter,
    DeliveryState,
    DeliveryStatus,
    Department,
    Direction,
    Interaction,
    Kind,
    OutboundCommand,
    Purpose,
    RoutedEvent,
    Routing,
    ThreadRef,
    UnifiedEvent,
)
from schemas.identities import Identity, IdentityType

__all__ = [
    "Attachment",
    "Channel",
    "ConsentChange",
    "CustomerEvent",
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
    "Purpose",
    "RoutedEvent",
    "Routing",
    "ThreadRef",
    "UnifiedEvent",
]

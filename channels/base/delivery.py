"""Delivery receipts that providers report for messages the hub sent."""

from __future__ import annotations

import uuid

#: The ``command_id`` of a ``DeliveryStatus`` a channel received from its provider (a status
#: callback) when the channel only knows the provider's message id. The processors replace it
#: with the command whose ``(channel, provider_message_id)`` the dispatcher recorded in
#: ``outbound_messages``.
UNRESOLVED_COMMAND = uuid.UUID(int=0)

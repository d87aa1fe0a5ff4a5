"""Delivery receipts that providers report for messages the hub sent."""

from schemas.events import UNRESOLVED_COMMAND

__all__ = ["UNRESOLVED_COMMAND"]

"""The generic API channel: any system posts interactions as JSON and receives replies."""

from channels.api.adapter import ApiAdapter

ADAPTER = ApiAdapter

__all__ = ["ADAPTER", "ApiAdapter"]

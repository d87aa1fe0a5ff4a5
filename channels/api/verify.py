"""Checks on an API-channel request before it is parsed (callers authenticate upstream)."""

from __future__ import annotations

from channels.base import InboundRequest, PayloadTooLarge, UnsupportedMediaType


def check_request(request: InboundRequest, max_body_bytes: int) -> None:
    """Raise PayloadTooLarge or UnsupportedMediaType for a body we will not parse."""
    if len(request.body) > max_body_bytes:
        raise PayloadTooLarge(f"body larger than {max_body_bytes} bytes")
    content_type = (request.header("content-type") or "application/json").split(";")[0].strip()
    if content_type != "application/json":
        raise UnsupportedMediaType(f"content-type must be application/json, not {content_type!r}")

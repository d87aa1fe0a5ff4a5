"""Errors an adapter raises; the HTTP layer maps each to one status code."""


class ChannelError(Exception):
    """Base of every adapter error."""


class SignatureError(ChannelError):
    """The request's signature is missing or wrong (HTTP 403)."""


class ParseError(ChannelError):
    """The request is authentic but cannot be understood (HTTP 422)."""

    def __init__(self, message: str, *, details: list[dict[str, object]] | None = None) -> None:
        super().__init__(message)
        self.details = details or []


class SendError(ChannelError):
    """The provider refused or failed to take an outbound message."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class SendRefused(SendError):
    """The adapter refused to send before reaching the provider, which would refuse it too (a
    reply outside a platform's messaging window): the delivery state ``refused``, not
    ``failed``."""


class PayloadTooLarge(ParseError):
    """The body is larger than the adapter accepts (HTTP 413)."""


class UnsupportedMediaType(ParseError):
    """The body is not in a format the adapter reads (HTTP 415)."""

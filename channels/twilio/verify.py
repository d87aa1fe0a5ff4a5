"""Check X-Twilio-Signature with the twilio library, against the URL Twilio actually called.

Twilio signs the full URL it requested (scheme, host, path and query) followed by the sorted
POST parameters, with the account's auth token (HMAC-SHA1, base64). Behind a proxy or load
balancer the hub sees another scheme and host than Twilio used, so the URL is rebuilt from
``OMNIHUB_PUBLIC_URL`` and the path and query the hub received.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from twilio.request_validator import RequestValidator, compare

from channels.base import InboundRequest, PayloadTooLarge, SignatureError, UnsupportedMediaType

SIGNATURE_HEADER = "X-Twilio-Signature"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


class _Params(dict[str, list[str]]):
    """POST parameters with every value of a repeated name, as RequestValidator reads them."""

    def getall(self, name: str) -> list[str]:
        """Every value sent under ``name`` (RequestValidator sorts and signs them all)."""
        return self[name]


def public_url(request_url: str, public_base: str | None) -> str:
    """The URL Twilio requested: the public base, then the path and query the hub received.

    Without a public base the URL is taken as the hub received it (no proxy in between).
    """
    if not public_base:
        return request_url
    parts = urlsplit(request_url)
    url = public_base.rstrip("/") + parts.path
    return f"{url}?{parts.query}" if parts.query else url


def form_params(request: InboundRequest) -> _Params:
    """The form body's parameters, repeated names kept; UnsupportedMediaType if not UTF-8."""
    try:
        items = request.form_items
    except UnicodeDecodeError:
        raise UnsupportedMediaType("the form body is not UTF-8") from None
    params = _Params()
    for name, value in items:
        params.setdefault(name, []).append(value)
    return params


def check_signature(
    request: InboundRequest, token: str | None, public_base: str | None, max_body_bytes: int
) -> None:
    """Raise SignatureError unless Twilio signed this request with ``token``.

    Form bodies are signed parameter by parameter; a JSON body is covered by the
    ``bodySHA256`` query parameter of the signed URL, and refused without it.
    """
    if not token:
        raise SignatureError("TWILIO_AUTH_TOKEN is not set: Twilio's signature cannot be checked")
    signature = request.header(SIGNATURE_HEADER)
    if not signature:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    if len(request.body) > max_body_bytes:
        raise PayloadTooLarge(f"body larger than {max_body_bytes} bytes")
    url = public_url(request.url, public_base)
    content_type = (request.header("content-type") or FORM).split(";")[0].strip().lower()
    validator = RequestValidator(token)
    if content_type == FORM:
        params = form_params(request)
        # The URL as configured is what Twilio signs in the common case: one HMAC. Only on a
        # mismatch does the library's validate try its with- and without-port variants.
        valid = compare(validator.compute_signature(url, params), signature) or validator.validate(
            url, params, signature
        )
    elif content_type == JSON:
        if "bodySHA256" not in parse_qs(urlsplit(url).query):
            raise SignatureError("a JSON webhook must carry bodySHA256 in its signed URL")
        try:
            text = request.body.decode("utf-8")
        except UnicodeDecodeError:
            raise UnsupportedMediaType("the JSON body is not UTF-8") from None
        valid = validator.validate(url, text, signature)
    else:
        raise UnsupportedMediaType(f"Twilio posts {FORM} or {JSON}, not {content_type!r}")
    if not valid:
        raise SignatureError(f"{SIGNATURE_HEADER} does not match {url}")

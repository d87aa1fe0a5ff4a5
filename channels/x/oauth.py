"""OAuth 1.0a request signing (HMAC-SHA1), as X documents it for user-context calls
("Authorizing a request", "Creating a signature"): what its DM endpoints and the media host
ton.twitter.com take, and a token that does not expire every two hours like OAuth 2.0's.

Only the query enters the signature base with the oauth_* parameters: the hub's bodies are
JSON or multipart, which OAuth 1.0a leaves out."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from urllib.parse import parse_qsl, quote, unquote, urlsplit


def encode(value: str) -> str:
    """RFC 3986 percent-encoding, as OAuth 1.0a requires (only unreserved characters kept)."""
    return quote(value, safe="-._~")


def base_string(method: str, url: str, params: list[tuple[str, str]]) -> str:
    """The signature base string: method, the URL without query, the sorted parameters."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    base_url = f"{scheme}://{host}{parts.path or '/'}"
    pairs = sorted((encode(k), encode(v)) for k, v in params)
    normalised = "&".join(f"{k}={v}" for k, v in pairs)
    return "&".join((method.upper(), encode(base_url), encode(normalised)))


def signature(
    method: str, url: str, params: list[tuple[str, str]], consumer_secret: str, token_secret: str
) -> str:
    """The base64 HMAC-SHA1 of the base string, keyed with both secrets."""
    key = f"{encode(consumer_secret)}&{encode(token_secret)}".encode()
    text = base_string(method, url, params).encode()
    return base64.b64encode(hmac.new(key, text, hashlib.sha1).digest()).decode()


def authorization(
    method: str,
    url: str,
    credentials: tuple[str, str, str, str],
    *,
    nonce: str | None = None,
    timestamp: int | None = None,
) -> str:
    """The ``Authorization: OAuth ...`` header of a request to ``url`` (query included)."""
    consumer_key, consumer_secret, token, token_secret = credentials
    oauth = {
        "oauth_consumer_key": consumer_key,
        "oauth_nonce": nonce or secrets.token_hex(16),
        "oauth_signature_method": "HMAC-SHA1",
        "oauth_timestamp": str(timestamp if timestamp is not None else int(time.time())),
        "oauth_token": token,
        "oauth_version": "1.0",
    }
    query = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    oauth["oauth_signature"] = signature(
        method, url, [*oauth.items(), *query], consumer_secret, token_secret
    )
    return "OAuth " + ", ".join(f'{encode(k)}="{encode(v)}"' for k, v in sorted(oauth.items()))


def parse_header(header: str) -> dict[str, str]:
    """The parameters of an ``Authorization: OAuth ...`` header (for a stand-in that checks)."""
    if not header.startswith("OAuth "):
        return {}
    found: dict[str, str] = {}
    for item in header[len("OAuth ") :].split(","):
        key, _, value = item.strip().partition("=")
        found[unquote(key)] = unquote(value.strip('"'))
    return found

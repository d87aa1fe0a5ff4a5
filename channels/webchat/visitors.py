"""Who is on the other end of a widget: an anonymous visitor's signed id, and a signed-in
user as the site's own backend vouches for them.

- A visitor id is ``<site>.<uuid hex>.<mac>``, the MAC an HMAC-SHA256 of the site and the
  uuid with the hub's visitor key: a visitor cannot take over another's conversation by
  editing the id the widget keeps.
- A signed-in user's claim is what the site's backend signs with the site's secret, as
  Chatwoot's ``identifier_hash`` and Intercom's identity verification, but expiring:
  ``hex(HMAC-SHA256(secret, "<user id>\\n<email or empty>\\n<expires, unix seconds>"))``.
  Checked in constant time; only such a claim links the visitor to a customer the hub knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from channels.webchat.config import Site
from schemas.identities import normalise_email

#: The longest a claim may be valid ahead: a leaked one stops working within a day.
MAX_CLAIM_SECONDS = 24 * 3600
_VISITOR = re.compile(r"^([a-z0-9][a-z0-9-]{0,31})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{24})$")
_USER_ID = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


class VisitorIds:
    """Issues and checks visitor ids with the hub's visitor key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def issue(self, site: str) -> tuple[str, uuid.UUID]:
        """A new visitor on ``site``: their id, and the visitor it names."""
        visitor = uuid.uuid4()
        return self._id(site, visitor), visitor

    def visitor(self, token: str, site: str) -> uuid.UUID | None:
        """The visitor ``token`` names on ``site``; None for a forged, edited or other
        site's id."""
        found = _VISITOR.match(token)
        if found is None or found.group(1) != site:
            return None
        visitor = uuid.UUID(found.group(2))
        if not hmac.compare_digest(self._id(site, visitor), token):
            return None
        return visitor

    def _id(self, site: str, visitor: uuid.UUID) -> str:
        mac = hmac.new(self._key, f"visitor\n{site}\n{visitor.hex}".encode(), hashlib.sha256)
        return f"{site}.{visitor.hex}.{base64.urlsafe_b64encode(mac.digest()[:18]).decode()}"


def conversation_of(site: str, visitor: uuid.UUID) -> str:
    """The visitor's conversation, and the value of their ``webchat_visitor`` identity."""
    return f"{site}:{visitor}"


class ClaimRefused(ValueError):
    """A signed-in user's claim that is malformed, wrongly signed or expired."""


@dataclass(frozen=True)
class Claim:
    """A signed-in user of a site, as its backend signed them."""

    user_id: str
    email: str | None


def claim_signature(secret: bytes, user_id: str, email: str | None, expires: int) -> str:
    """What a site's backend computes for its user (and tests, for theirs)."""
    message = f"{user_id}\n{email or ''}\n{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verified_claim(site: Site, raw: Any, now: datetime) -> Claim:
    """The claim ``raw`` (``{"id", "email"?, "expires", "signature"}``) if the site's secret
    signed it and it has not expired; ClaimRefused naming what is wrong otherwise."""
    if site.secret is None:
        raise ClaimRefused("this site verifies no signed-in users (no secret configured)")
    if not isinstance(raw, dict):
        raise ClaimRefused("identity must be an object")
    user_id, email, expires, signature = (
        raw.get("id"),
        raw.get("email"),
        raw.get("expires"),
        raw.get("signature"),
    )
    if not isinstance(user_id, str) or not _USER_ID.match(user_id):
        raise ClaimRefused("identity.id must be 1-200 printable characters")
    if email is not None and not isinstance(email, str):
        raise ClaimRefused("identity.email must be a string")
    if not isinstance(expires, int) or isinstance(expires, bool):
        raise ClaimRefused("identity.expires must be unix seconds")
    if not isinstance(signature, str):
        raise ClaimRefused("identity.signature is missing")
    wanted = claim_signature(site.secret.get_secret_value().encode(), user_id, email, expires)
    if not hmac.compare_digest(wanted, signature.lower()):
        raise ClaimRefused("identity signature does not match")
    seconds = expires - now.timestamp()
    if seconds <= 0:
        raise ClaimRefused("identity claim expired")
    if seconds > MAX_CLAIM_SECONDS:
        raise ClaimRefused("identity claim valid too long ahead (at most 24 h)")
    try:
        address = normalise_email(email) if email else None
    except ValueError as exc:
        raise ClaimRefused("identity.email is not an address") from exc
    return Claim(user_id=user_id, email=address)

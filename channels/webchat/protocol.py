"""The widget's WebSocket frames (JSON text). A client says ``hello`` first, then sends
``message`` and ``file`` frames, ``read`` once the visitor saw the conversation up to a
number, ``typing`` while the visitor types, ``contact`` (an address for replies, when the
welcome said no agent is ``online``) and ``account`` (a signed-in visitor's way to their
self-service pages, when the welcome offered ``account``); the hub answers ``welcome``, ``entry`` (a
message of the conversation, numbered), ``ack`` (a visitor's message is on the broker and
numbered), ``error``, and ``typing`` (with its ``author``) while an agent types.

Close codes (RFC 6455 leaves 4000-4999 to applications): 4400 the first frame was no hello,
4401 the site's verification refused the visitor, 4403 the page's origin is not the site's,
4408 no hello in time, 4429 too many chats opened from the address (try again later)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

BAD_HELLO, NOT_VERIFIED, WRONG_ORIGIN, NO_HELLO, TOO_MANY = 4400, 4401, 4403, 4408, 4429
#: Close code for "the hub cannot serve this now" (RFC 6455 7.4.1: try again later).
UNAVAILABLE = 1013


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Frame):
    """Which site and visitor this is, and the last entry number the widget has shown."""

    type: Literal["hello"]
    site: str = Field(max_length=32)
    visitor: str | None = Field(default=None, max_length=200)
    identity: dict[str, Any] | None = None
    after: int = Field(default=0, ge=0)
    language: str | None = Field(default=None, max_length=20)


class Say(_Frame):
    """A visitor's message, with the widget's own id for it (a retry reuses it)."""

    type: Literal["message"]
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    text: str = Field(min_length=1, max_length=100_000)


class Upload(_Frame):
    """A file the visitor sends (an image or a PDF), its bytes in base64."""

    type: Literal["file"]
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    name: str = Field(min_length=1, max_length=255)
    content_type: str = Field(max_length=100)
    data: str


class Read(_Frame):
    """The widget showed the conversation up to ``seq`` to the visitor (the chat open, the
    page in view): the agents' replies up to there are read."""

    type: Literal["read"]
    seq: int = Field(ge=1)


class Contact(_Frame):
    """Where replies may go when the visitor has left (offline: no agent present): an email
    address or a phone number, recorded on the conversation, never an identity (typed, not
    proven: it links no history)."""

    type: Literal["contact"]
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    address: str = Field(min_length=3, max_length=320)


class Account(_Frame):
    """A signed-in visitor asks for their account pages: the hub answers ``account`` with a
    one-time sign-in token, which the widget posts to the hub's ``/me/widget`` page."""

    type: Literal["account"]


class Typing(_Frame):
    """The visitor is typing (the widget says so every few seconds while they do; nothing
    more: no text, never stored)."""

    type: Literal["typing"]


ClientFrame = Hello | Say | Upload | Read | Typing | Contact | Account
_CLIENT: TypeAdapter[ClientFrame] = TypeAdapter(Annotated[ClientFrame, Field(discriminator="type")])


class BadFrame(ValueError):
    """A frame that is not JSON or not one the protocol knows."""


def client_frame(text: str) -> ClientFrame:
    """The frame ``text`` holds; BadFrame naming what is wrong."""
    try:
        return _CLIENT.validate_json(text)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "frame"
        raise BadFrame(f"{where}: {first['msg']}") from None


def frame(kind: str, **fields: Any) -> str:
    """A hub frame as text."""
    return json.dumps({"type": kind, **fields}, ensure_ascii=False, separators=(",", ":"))

"""The Bot API's vocabulary that the adapter reads: an ``Update`` and what it carries.

Only the fields the hub uses are declared; Telegram adds fields over time, so unknown ones are
ignored rather than refused (a new Bot API version must not send updates to the dead letters).
Field names and meanings follow https://core.telegram.org/bots/api#available-types.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Object(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class User(_Object):
    """A Telegram user or bot."""

    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    @property
    def full_name(self) -> str:
        """First and last name, as Telegram shows them."""
        return " ".join(p for p in (self.first_name, self.last_name) if p).strip()


class Chat(_Object):
    """Where a message was sent: ``private`` (the user's chat with the bot), ``group``,
    ``supergroup`` or ``channel``."""

    id: int
    type: str
    title: str | None = None
    username: str | None = None


class PhotoSize(_Object):
    """One size of a photo (a message carries several, smallest first)."""

    file_id: str
    file_unique_id: str = ""
    width: int = 0
    height: int = 0
    file_size: int | None = None


class FileObject(_Object):
    """A document, audio, voice note, video, video note, animation or sticker: a file on
    Telegram's servers named by ``file_id``."""

    file_id: str
    file_unique_id: str = ""
    file_name: str | None = None
    mime_type: str | None = None
    file_size: int | None = None
    duration: int | None = None
    emoji: str | None = None  # stickers
    is_animated: bool = False  # stickers: .tgs
    is_video: bool = False  # stickers: .webm


class Location(_Object):
    """A point on the map."""

    latitude: float
    longitude: float


class Contact(_Object):
    """A phone contact shared in the chat (not necessarily the sender's own)."""

    phone_number: str
    first_name: str = ""
    last_name: str | None = None
    user_id: int | None = None
    vcard: str | None = None


class Message(_Object):
    """A message, as sent or as edited (``edit_date``)."""

    message_id: int
    date: int
    chat: Chat
    from_: User | None = Field(default=None, alias="from")
    sender_chat: Chat | None = None
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] | None = None
    document: FileObject | None = None
    audio: FileObject | None = None
    voice: FileObject | None = None
    video: FileObject | None = None
    video_note: FileObject | None = None
    animation: FileObject | None = None
    sticker: FileObject | None = None
    location: Location | None = None
    contact: Contact | None = None
    reply_to_message: Message | None = None
    media_group_id: str | None = None


class CallbackQuery(_Object):
    """A press on an inline keyboard button of one of the bot's messages."""

    id: str
    from_: User = Field(alias="from")
    message: Message | None = None
    data: str | None = None
    game_short_name: str | None = None


class Update(_Object):
    """One webhook request's body: ``update_id`` and exactly one of the optional fields."""

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    channel_post: Message | None = None
    edited_channel_post: Message | None = None
    callback_query: CallbackQuery | None = None

    def kind(self) -> str:
        """The name of the field the update carries (``message``, ``poll``, ...), or
        ``unknown``; unknown fields are kept out of the model, so the raw keys decide."""
        for name in ("message", "edited_message", "channel_post", "edited_channel_post"):
            if getattr(self, name) is not None:
                return name
        return "callback_query" if self.callback_query is not None else "unknown"

"""The web chat adapter: the widget's WebSocket, visitors' messages in (acknowledged once
on the broker and numbered in the conversation log), agents' replies out to whichever web
process holds the visitor's socket (``SessionAdapter``'s relay), and typing both ways (never
stored: announced through the ``Typing`` the hub attached, shown by ``show_typing``)."""

from __future__ import annotations

import asyncio
import html
import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar

import nh3

from channels.base import (
    ClientConnection,
    ConversationLog,
    Health,
    PublishError,
    SendError,
    SendResult,
    SessionAdapter,
    SessionClosed,
    SessionRoute,
    blob_id,
)
from channels.base.scan import CommandScanner, ScanUnavailable
from channels.webchat import protocol
from channels.webchat.config import Site, WebchatSettings
from channels.webchat.files import FileRefused, accepted_file
from channels.webchat.limits import TYPING_BURST, TYPING_EVERY, Buckets
from channels.webchat.protocol import (
    Account,
    BadFrame,
    Contact,
    Hello,
    Read,
    Say,
    Typing,
    Upload,
    frame,
)
from channels.webchat.visitors import (
    Claim,
    ClaimRefused,
    VisitorIds,
    conversation_of,
    verified_claim,
)
from schemas import (
    Channel,
    DeliveryState,
    DeliveryStatus,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    Kind,
    OutboundCommand,
    ThreadRef,
)
from schemas.events import Attachment, utcnow
from schemas.ids import event_id_for

#: Entries sent on a reconnect at most (older ones are on the customer's history page).
REPLAY_LIMIT = 500
#: A frame may spend this many characters a text character (JSON escapes: \uXXXX is 6).
FRAME_CHARS_PER_TEXT_CHAR = 6


class WebchatAdapter(SessionAdapter):
    """The chat widget's connections, for every configured site."""

    name: ClassVar[str] = "webchat"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.WEBCHAT})
    sessions: ClassVar[tuple[SessionRoute, ...]] = (
        SessionRoute("ws", summary="the chat widget's connection (JSON frames)"),
    )

    def __init__(self, settings: WebchatSettings | None = None) -> None:
        self.settings = settings or WebchatSettings()
        self.visitors = VisitorIds(self.settings.key())
        self.messages = Buckets(self.settings.messages_burst, self.settings.messages_every)
        self.openings = Buckets(self.settings.visitors_burst, self.settings.visitors_every)
        self.typings = Buckets(TYPING_BURST, TYPING_EVERY)

    async def serve(self, connection: ClientConnection, route: SessionRoute) -> None:
        """Hello, then the visitor's messages until the socket closes."""
        try:
            async with asyncio.timeout(self.settings.hello_seconds):
                first = await connection.receive_text()
        except TimeoutError:
            await connection.close(protocol.NO_HELLO, "say hello first")
            return
        try:
            hello = protocol.client_frame(first)
        except BadFrame as exc:
            await connection.close(protocol.BAD_HELLO, str(exc)[:120])
            return
        if not isinstance(hello, Hello):
            await connection.close(protocol.BAD_HELLO, "the first frame must be hello")
            return
        site = self.settings.site(hello.site)
        if site is None or connection.headers.get("origin", "").lower() not in site.origins:
            await connection.close(protocol.WRONG_ORIGIN, "this page may not open the chat")
            return
        if self.openings.take(site.id, connection.peer):
            await connection.close(protocol.TOO_MANY, "too many chats from here; try later")
            return
        log = self.log
        if log is None:
            await connection.close(protocol.UNAVAILABLE, "the chat is not available here")
            return
        claim = None
        try:
            if hello.identity is not None:
                claim = verified_claim(site, hello.identity, utcnow())
            elif site.require_verification:
                raise ClaimRefused("this site signs its visitors in first")
        except ClaimRefused as exc:
            await connection.close(protocol.NOT_VERIFIED, str(exc)[:120])
            return
        visitor = self.visitors.visitor(hello.visitor or "", site.id)
        if visitor is not None and hello.visitor is not None:
            token = hello.visitor
        else:  # none yet, or one that does not check: a conversation of its own
            token, visitor = self.visitors.issue(site.id)
        chat = _Chat(self, site, conversation_of(site.id, visitor), claim, hello, connection)
        await chat.run(token, log)

    async def send(self, command: OutboundCommand) -> SendResult:
        """Number the reply in the visitor's conversation, then relay it to the process
        holding the visitor's socket (if any: the widget gets it on its next hello)."""
        if self.log is None:
            raise SendError("web chat replies need the conversation log (DATABASE_URL)")
        entry = _reply_entry(command)
        seq = await self.log.append(command.to.value, command.command_id, entry)
        numbered = command.model_copy(update={"attributes": {**command.attributes, "seq": seq}})
        await self.publisher.relay(numbered)
        return SendResult(
            provider_message_id=f"webchat:{command.command_id}", state=DeliveryState.SENT
        )

    async def deliver(self, command: OutboundCommand) -> bool:
        """Send a relayed reply to the visitor's sockets this process holds."""
        seq = command.attributes.get("seq")
        if not isinstance(seq, int):
            return False
        entry = _reply_entry(command)
        return await self.held.send(command.to.value, frame("entry", seq=seq, entry=entry))

    async def scanned(self, content: bytes) -> None:
        """Run the virus scan hook, if one is set (WEBCHAT_SCAN_COMMAND): FileRefused
        ``infected`` when it finds something, ``retry`` when it gives no verdict."""
        command = self.settings.scan_command
        if not command:
            return
        try:
            found = await CommandScanner(command).infected(content)
        except ScanUnavailable as exc:
            logging.getLogger(__name__).warning("web chat: no virus scan verdict: %s", exc)
            raise FileRefused("retry", "the file could not be checked; try again") from exc
        if found is not None:
            raise FileRefused("infected", "this file looks harmful and was not sent")

    def allowed_origin(self, origin: str) -> bool:
        """The configured sites' pages may use the fallback transport (CORS); each hello is
        still checked against its own site's origins."""
        return any(origin.lower() in site.origins for site in self.settings.sites)

    async def show_typing(self, key: str, author: str) -> bool:
        """Tell the visitor's sockets this process holds that agent ``author`` is typing."""
        return await self.held.send(key, frame("typing", author=author[:100]))

    async def health(self) -> Health:
        """Configured sites (no network call)."""
        if not self.settings.sites:
            return Health(ok=True, detail="no site configured (WEBCHAT_SITES): chats refused")
        return Health(ok=True, detail="sites: " + ", ".join(s.id for s in self.settings.sites))


class _Chat:
    """One widget connection: replays what it missed, then takes its messages."""

    def __init__(
        self,
        adapter: WebchatAdapter,
        site: Site,
        conversation: str,
        claim: Claim | None,
        hello: Hello,
        connection: ClientConnection,
    ) -> None:
        self.adapter = adapter
        self.site = site
        self.conversation = conversation
        self.claim = claim
        self.hello = hello
        self.socket = _Buffered(connection)
        #: The number up to which the visitor's reading was recorded.
        self.read = 0

    async def run(self, token: str, log: ConversationLog) -> None:
        with self.adapter.held.holding(self.conversation, self.socket):
            await self.socket.send_now(
                frame(
                    "welcome",
                    visitor=token,
                    site=self.site.id,
                    name=self.site.name,
                    colour=self.site.colour,
                    online=await self._online(),
                    account=self.claim is not None and self.adapter.accounts is not None,
                )
            )
            last = self.hello.after
            try:
                missed = await log.since(self.conversation, last, REPLAY_LIMIT)
            except OSError:
                await self.socket.close(protocol.UNAVAILABLE, "try again in a moment")
                return
            for seq, entry in missed:
                await self.socket.send_now(frame("entry", seq=seq, entry=entry))
                last = seq
            await self.socket.ready(last)
            try:
                while True:
                    text = await self.socket.receive_text()
                    await self._take(text, log)
            except SessionClosed:
                return

    async def _take(self, text: str, log: ConversationLog) -> None:
        settings = self.adapter.settings
        if len(text) > FRAME_CHARS_PER_TEXT_CHAR * settings.max_message_chars + 1000 and (
            not text.startswith('{"type":"file"')
            or len(text) > (settings.max_file_bytes + 2) // 3 * 4 + 2000
        ):
            # refused before parsing: a frame's size is bounded by what it may carry
            await self.socket.send_now(frame("error", code="too_long", message="frame too large"))
            return
        try:
            said = protocol.client_frame(text)
        except BadFrame as exc:
            await self.socket.send_now(frame("error", code="bad_frame", message=str(exc)))
            return
        if isinstance(said, Read):
            await self._read(said.seq, log)
            return
        if isinstance(said, Upload):
            await self._upload(said, log)
            return
        if isinstance(said, Typing):
            await self._typing()
            return
        if isinstance(said, Contact):
            await self._contact(said, log)
            return
        if isinstance(said, Account):
            await self._account()
            return
        if not isinstance(said, Say):
            await self.socket.send_now(frame("error", code="bad_frame", message="hello once"))
            return
        if await self._slowed(said.client_id):
            return
        clean = plain_text(said.text)
        if not clean:
            await self._refuse(said.client_id, "empty", message="no text left")
            return
        if len(clean) > self.adapter.settings.max_message_chars:
            limit = self.adapter.settings.max_message_chars
            await self._refuse(said.client_id, "too_long", limit=limit)
            return
        interaction = self._interaction(said.client_id, clean)
        seq = await self._publish(interaction, said.client_id, {"text": clean}, log)
        if seq is not None:
            # the text as stored (markup removed): the widget shows that one
            await self.socket.send_now(frame("ack", client_id=said.client_id, seq=seq, text=clean))

    async def _upload(self, said: Upload, log: ConversationLog) -> None:
        """An image or PDF: checked, stored in the blob store, then published and numbered
        as a message whose attachment it is."""
        if await self._slowed(said.client_id):
            return
        try:
            name, content = accepted_file(
                said.name, said.content_type, said.data, self.adapter.settings.max_file_bytes
            )
            await self.adapter.scanned(content)
        except FileRefused as exc:
            await self._refuse(said.client_id, exc.code, message=str(exc))
            return
        kind = said.content_type.lower()
        provider_id = f"{self.conversation}/{said.client_id}"
        blob = blob_id(event_id_for(Channel.WEBCHAT.value, provider_id), 1)
        attachment = Attachment(name=name, content_type=kind, size=len(content), blob=blob)
        try:
            await self.adapter.blobs.put(blob, content)
        except OSError as exc:
            await self._refuse(said.client_id, "retry", message=str(exc)[:200])
            return
        interaction = self._interaction(said.client_id, None, [attachment])
        shown = {"file": {"name": name, "content_type": kind, "size": len(content)}}
        seq = await self._publish(interaction, said.client_id, shown, log)
        if seq is not None:
            await self.socket.send_now(frame("ack", client_id=said.client_id, seq=seq))

    async def _publish(
        self,
        interaction: Interaction,
        client_id: str,
        shown: dict[str, Any],
        log: ConversationLog,
    ) -> int | None:
        """Publish, then number in the log; the number, or None once the widget was told to
        try again (the same client id makes the same event and number)."""
        entry = {
            "id": str(interaction.event_id),
            "direction": "inbound",
            "client_id": client_id,
            "at": interaction.received_at.isoformat(),
            **shown,
        }
        try:
            await self.adapter.publisher.publish([interaction])
            return await log.append(self.conversation, interaction.event_id, entry)
        except (PublishError, OSError) as exc:
            await self._refuse(client_id, "retry", message=str(exc)[:200])
            return None

    async def _online(self) -> bool:
        """Whether an agent who would get this chat is present; unknown (no database, or it
        failed): yes, and the widget simply waits for an answer."""
        presence = self.adapter.presence
        if presence is None:
            return True
        who = Identity(type=IdentityType.WEBCHAT_VISITOR, value=self.conversation)
        department = self.site.department.value if self.site.department else None
        try:
            return await presence.answering(who, department)
        except OSError:
            return True

    async def _account(self) -> None:
        """A visitor the site signed in asks for their self-service pages: a one-time token
        for the customer their signed-in id belongs to, over this socket only."""
        accounts = self.adapter.accounts
        if self.claim is None or accounts is None:
            await self.socket.send_now(
                frame("error", code="not_signed_in", message="the site did not sign you in")
            )
            return
        wait = self.adapter.messages.take(self.conversation, self.socket.peer)
        if wait:
            await self.socket.send_now(frame("error", code="slow_down", retry_after=wait))
            return
        who = Identity(type=IdentityType.USER_ID, scope=self.site.id, value=self.claim.user_id)
        try:
            token = await accounts.sign_in_token(who)
        except OSError:
            await self.socket.send_now(frame("error", code="retry", message="try again"))
            return
        if token is None:  # their first message is not resolved yet
            await self.socket.send_now(
                frame("error", code="not_yet", message="write to us first, then try again")
            )
            return
        await self.socket.send_now(frame("account", token=token))

    async def _contact(self, said: Contact, log: ConversationLog) -> None:
        """An address for replies the visitor may not see here: recorded on the conversation
        (attributes ``contact_type`` and ``contact_value``), never as an identity."""
        if await self._slowed(said.client_id):
            return
        address = contact_address(said.address)
        if address is None:
            await self._refuse(said.client_id, "bad_address", message="not an address")
            return
        interaction = self._interaction(
            said.client_id,
            f"Replies may also go to {address.value}",
            kind=Kind.FORM,
            extra={"contact_type": address.type.value, "contact_value": address.value},
        )
        seq = await self._publish(interaction, said.client_id, {"contact": address.value}, log)
        if seq is not None:
            await self.socket.send_now(
                frame("ack", client_id=said.client_id, seq=seq, contact=address.value)
            )

    async def _typing(self) -> None:
        """The visitor is typing: announced to the agents watching their customer, at most
        TYPING_BURST at once then one every TYPING_EVERY seconds (the rest dropped, no
        error); off where the process has no database."""
        typing = self.adapter.typing
        if typing is None or self.adapter.typings.take(self.conversation, self.socket.peer):
            return
        identity = Identity(type=IdentityType.WEBCHAT_VISITOR, value=self.conversation)
        await typing.customer_typing(identity)

    async def _slowed(self, client_id: str) -> bool:
        """Whether the visitor is writing faster than allowed (then told when to send it)."""
        wait = self.adapter.messages.take(self.conversation, self.socket.peer)
        if wait:
            await self._refuse(client_id, "slow_down", retry_after=wait)
        return bool(wait)

    async def _refuse(self, client_id: str, code: str, **fields: Any) -> None:
        """Tell the widget why its frame ``client_id`` was not taken."""
        await self.socket.send_now(frame("error", code=code, client_id=client_id, **fields))

    async def _read(self, seq: int, log: ConversationLog) -> None:
        """The agents' replies up to ``seq`` are read: their delivery state."""
        if seq <= self.read:
            return
        try:
            limit = min(seq - self.read, REPLAY_LIMIT)
            entries = await log.since(self.conversation, self.read, limit)
            read = [
                DeliveryStatus(
                    command_id=uuid.UUID(str(entry["id"])),
                    channel=Channel.WEBCHAT,
                    state=DeliveryState.READ,
                    occurred_at=utcnow(),
                    provider_message_id=f"webchat:{entry['id']}",
                )
                for number, entry in entries
                if number <= seq and entry.get("direction") == "outbound"
            ]
            if read:
                await self.adapter.publisher.publish(read)
        except (PublishError, OSError):
            return  # the next read frame says it again
        # read up to seq, or up to the last entry handled when the limit cut the list short
        self.read = entries[-1][0] if len(entries) == limit and entries else seq

    def _interaction(
        self,
        client_id: str,
        text: str | None,
        attachments: list[Attachment] | None = None,
        kind: Kind = Kind.MESSAGE,
        extra: dict[str, str] | None = None,
    ) -> Interaction:
        identities = [Identity(type=IdentityType.WEBCHAT_VISITOR, value=self.conversation)]
        if self.claim is not None:
            identities.append(
                Identity(type=IdentityType.USER_ID, scope=self.site.id, value=self.claim.user_id)
            )
            if self.claim.email:
                identities.append(Identity(type=IdentityType.EMAIL, value=self.claim.email))
        attributes: dict[str, str | int | float | bool | None] = {"site": self.site.id}
        if self.hello.language:
            attributes["language"] = self.hello.language
        attributes.update(extra or {})
        return Interaction.create(
            channel=Channel.WEBCHAT,
            direction=Direction.INBOUND,
            kind=kind,
            identities=identities,
            text=text,
            attachments=attachments or [],
            provider_message_id=f"{self.conversation}/{client_id}",
            thread=ThreadRef(id=self.conversation),
            source="channels/webchat",
            attributes=attributes,
        )


class _Buffered:
    """A connection whose relayed entries wait until the replay is sent, then go out in
    order, none the replay already sent (a reply can arrive while the log is read)."""

    def __init__(self, connection: ClientConnection) -> None:
        self.connection = connection
        self.headers: Mapping[str, str] = connection.headers
        self.query: Mapping[str, str] = connection.query
        self.peer = connection.peer
        self._waiting: list[str] | None = []
        self._last = 0

    async def ready(self, last: int) -> None:
        """The replay went up to ``last``: send what waited, beyond it."""
        waiting, self._waiting = self._waiting or [], None
        self._last = last
        for text in waiting:
            await self.send_text(text)

    async def send_text(self, text: str) -> None:
        """A relayed entry: held back during the replay, dropped if the replay had it."""
        if self._waiting is not None:
            self._waiting.append(text)
            return
        seq = _seq(text)
        if seq is not None and seq <= self._last:
            return
        if seq is not None:
            self._last = seq
        await self.connection.send_text(text)

    async def send_now(self, text: str) -> None:
        await self.connection.send_text(text)

    async def receive_text(self) -> str:
        return await self.connection.receive_text()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.connection.close(code, reason)


def _seq(text: str) -> int | None:
    try:
        found: Any = json.loads(text).get("seq")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, int) else None


def plain_text(text: str) -> str:
    """A visitor's text as text: markup removed (scripts with their content), entities read,
    surrounding space trimmed; shown as text everywhere, never as HTML."""
    return html.unescape(nh3.clean(text, tags=set())).strip()


def contact_address(text: str) -> Identity | None:
    """An email address or an international phone number (+ and digits), normalised."""
    text = text.strip()
    kind = IdentityType.EMAIL if "@" in text else IdentityType.PHONE
    try:
        return Identity(type=kind, value=text)
    except ValueError:
        return None


def _reply_entry(command: OutboundCommand) -> dict[str, Any]:
    """What the widget shows of an agent's reply."""
    return {
        "id": str(command.command_id),
        "direction": "outbound",
        "text": command.text,
        "author": _author(command.requested_by),
        "at": command.created_at.isoformat(),
    }


def _author(requested_by: str) -> str:
    """An agent's name as the widget shows it (``console:alice`` is alice)."""
    return requested_by.rpartition(":")[2][:100] or "agent"


__all__ = ["WebchatAdapter", "plain_text"]

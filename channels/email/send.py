"""Send outbound email through an SMTP relay, asynchronously, with aiosmtplib.

One connection per send (STARTTLS, implicit TLS or plain, with AUTH when configured), the
transaction driven step by step so a failure is known to be before or during DATA. What the
relay provably did not take is retried with exponential back-off: 4xx answers, and failures
to connect or before DATA. A 5xx is final at once. A connection lost or timed out during DATA
is not retried here, as the relay may have taken the message; the SendError is retryable and
a resend carries the same Message-ID, which receivers collapse.

Recipients come from the command only (the customer, and a reply-all's Cc); a Cc refused
does not fail the send, the customer refused does.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import cast

import aiosmtplib
import dkim

from channels.base.adapter import SendResult
from channels.base.errors import SendError
from channels.email import outbound
from channels.email.relay_config import Relay, RelaySettings
from channels.email.threads import ThreadSigner
from schemas import Attachment, Channel, DeliveryState, IdentityType, OutboundCommand
from schemas.events import utcnow

log = logging.getLogger(__name__)

#: The headers a DKIM signature covers (RFC 6376 5.4.1, with the threading and automatic
#: fields): a relay or list cannot change who, what or which conversation without breaking it.
DKIM_HEADERS = (
    b"from",
    b"reply-to",
    b"subject",
    b"date",
    b"to",
    b"cc",
    b"message-id",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"auto-submitted",
)
#: The longest wait between two attempts, seconds.
MAX_BACKOFF = 60.0
#: The window of the automatic-mail cap, seconds.
CAP_WINDOW = 86_400.0

_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def status_code(code: int, text: str) -> str:
    """The code a SendError carries: the enhanced status (RFC 3463) when the server gave one,
    else the SMTP reply code."""
    match = _ENHANCED.match(text)
    return match[1] if match else str(code)


def _reply_error(exc: aiosmtplib.SMTPResponseException, stage: str) -> SendError:
    text = " ".join(str(exc.message).split())[:500]
    return SendError(
        f"the relay answered {exc.code} {text} ({stage})",
        code=status_code(exc.code, text),
        retryable=400 <= exc.code < 500,
    )


class _Temporary(Exception):
    """An attempt the relay provably did not take: worth another after a pause."""

    def __init__(self, error: SendError) -> None:
        super().__init__(str(error))
        self.error = error


def _answered(exc: aiosmtplib.SMTPResponseException, stage: str) -> Exception:
    """What a refusal at ``stage`` raises: _Temporary for a 4xx, the SendError for a 5xx."""
    error = _reply_error(exc, stage)
    return _Temporary(error) if error.retryable else error


@dataclass
class _Outcome:
    """What one transaction did with each recipient."""

    accepted: list[str]
    temporary: dict[str, SendError]
    permanent: dict[str, SendError]


class AutomaticCap:
    """At most ``limit`` automatic messages per recipient in a sliding 24 h window.

    Counted in this process only (a restart or a second dispatcher starts afresh): it stops
    two machines answering each other forever, and needs no shared store for that. A command
    counts once however often it is resent.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self._clock = clock
        self._sent: dict[str, deque[tuple[float, uuid.UUID]]] = {}
        self._checks = 0

    def _recent(self, recipient: str, now: float) -> deque[tuple[float, uuid.UUID]]:
        sent = self._sent.setdefault(recipient, deque())
        while sent and sent[0][0] <= now - CAP_WINDOW:
            sent.popleft()
        return sent

    def _sweep(self, now: float) -> None:
        for recipient in list(self._sent):
            if not self._recent(recipient, now):
                del self._sent[recipient]

    def reserve(self, recipient: str, command_id: uuid.UUID) -> None:
        """Count a message to ``recipient``; SendError(code="automatic_cap") over the cap."""
        now = self._clock()
        self._checks += 1
        if self._checks % 1024 == 0:
            self._sweep(now)
        sent = self._recent(recipient.lower(), now)
        if any(command == command_id for _, command in sent):
            return
        if len(sent) >= self.limit:
            raise SendError(
                f"{self.limit} automatic messages already went to this recipient in 24 h",
                code="automatic_cap",
            )
        sent.append((now, command_id))

    def release(self, recipient: str, command_id: uuid.UUID) -> None:
        """Uncount a message that was not sent after all."""
        sent = self._sent.get(recipient.lower())
        if sent is not None:
            for entry in [e for e in sent if e[1] == command_id]:
                sent.remove(entry)


class EmailSender:
    """Sends the email channel's outbound commands through the configured relay."""

    def __init__(
        self,
        settings: RelaySettings,
        signer: ThreadSigner,
        read_blob: Callable[[str], Awaitable[bytes]],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.signer = signer
        self._read_blob = read_blob
        self.cap = AutomaticCap(settings.automatic_cap, clock)
        self._dkim_key: bytes | None = None
        self._tls: ssl.SSLContext | None = None
        self._clients: set[aiosmtplib.SMTP] = set()

    def _tls_context(self) -> ssl.SSLContext:
        """Verifies the relay's certificate and name (against EMAIL_RELAY_CA_FILE if set)."""
        if self._tls is None:
            ca = self.settings.ca_file
            self._tls = ssl.create_default_context(cafile=str(ca) if ca else None)
        return self._tls

    def _check(self, command: OutboundCommand) -> Relay:
        if command.channel is not Channel.EMAIL:
            raise SendError(
                f"the email channel sends email, not {command.channel.value}",
                code="unsupported_channel",
            )
        if command.to.type is not IdentityType.EMAIL:
            raise SendError(
                f"an email needs an email address, not {command.to.type.value}", code="no_email"
            )
        missing = self.settings.missing()
        relay = self.settings.relay()
        if missing or relay is None:
            raise SendError(f"email relay is not configured: {', '.join(missing)}", code="config")
        return relay

    async def _files(self, attachments: Sequence[Attachment]) -> list[tuple[Attachment, bytes]]:
        files: list[tuple[Attachment, bytes]] = []
        for attachment in attachments:
            if attachment.blob is None:
                raise SendError(
                    f"attachment {attachment.name or ''!r} is not in the blob store",
                    code="attachment",
                )
            try:
                files.append((attachment, await self._read_blob(attachment.blob)))
            except LookupError as exc:  # BlobMissing: never stored, or erased
                raise SendError(
                    f"attachment {attachment.blob} is missing", code="attachment_missing"
                ) from exc
            except OSError as exc:
                raise SendError(
                    f"attachment {attachment.blob} could not be read: {exc}",
                    code="blob",
                    retryable=True,
                ) from exc
        return files

    async def _sign(self, data: bytes) -> bytes:
        """``data`` with a DKIM-Signature field in front (relaxed/simple, rsa-sha256)."""
        settings = self.settings
        if not settings.dkim_enabled:
            return data
        assert settings.dkim_private_key_file and settings.dkim_selector and settings.dkim_domain
        if self._dkim_key is None:
            try:
                self._dkim_key = await asyncio.to_thread(settings.dkim_private_key_file.read_bytes)
            except OSError as exc:
                raise SendError(f"DKIM key unreadable: {exc}", code="config") from exc
        try:
            field = dkim.sign(
                data,
                settings.dkim_selector.encode("ascii"),
                settings.dkim_domain.encode("ascii"),
                self._dkim_key,
                include_headers=list(DKIM_HEADERS),
            )
        except (dkim.DKIMException, ValueError) as exc:
            raise SendError(f"DKIM signing failed: {exc}", code="dkim") from exc
        return cast(bytes, field) + data

    def message(
        self,
        command: OutboundCommand,
        sender: str,
        sender_name: str | None = None,
        files: Sequence[tuple[Attachment, bytes]] = (),
    ) -> EmailMessage:
        """The message ``send`` would send now (unsigned)."""
        return outbound.build_message(
            command,
            signer=self.signer,
            sender=sender,
            sender_name=sender_name,
            files=files,
            date=utcnow(),
        )

    async def send(
        self, command: OutboundCommand, sender: str, sender_name: str | None = None
    ) -> SendResult:
        """Send ``command`` from the inbox ``sender``; the result names the Message-ID.
        SendError with the relay's status code when it refuses, retryable for 4xx."""
        relay = self._check(command)
        customer = outbound.to_address(command)  # the address an autoresponder would be
        automatic = outbound.is_automatic(command)
        if automatic:
            self.cap.reserve(customer, command.command_id)
        try:
            message = self.message(
                command, sender, sender_name, await self._files(command.attachments)
            )
            data = await self._sign(outbound.to_bytes(message))
            recipients = outbound.recipients(command, sender)
            detail = await self._deliver(relay, command, sender, recipients, data)
        except BaseException:
            if automatic:
                self.cap.release(customer, command.command_id)
            raise
        return SendResult(
            provider_message_id=outbound.message_id(command, self.signer),
            state=DeliveryState.SENT,
            detail=detail,
        )

    def _delay(self, attempt: int) -> float:
        return float(min(self.settings.send_backoff * 2 ** (attempt - 2), MAX_BACKOFF))

    async def _deliver(
        self,
        relay: Relay,
        command: OutboundCommand,
        sender: str,
        recipients: list[str],
        data: bytes,
    ) -> str:
        """Hand ``data`` to the relay for ``recipients``, retrying those it deferred; what
        happened to the Cc, or SendError about the customer."""
        customer = recipients[0]
        utf8 = outbound.needs_smtputf8([sender, *recipients])
        pending = list(recipients)
        accepted: list[str] = []
        permanent: dict[str, SendError] = {}
        deferred: dict[str, SendError] = {}
        last: SendError | None = None
        attempts = self.settings.send_attempts
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                # the code only: a server's text may quote the recipient's address
                log.warning(
                    "email: command %s deferred (%s), attempt %d of %d",
                    command.command_id,
                    last.code if last else "?",
                    attempt,
                    attempts,
                )
                await asyncio.sleep(self._delay(attempt))
            try:
                outcome = await self._transaction(relay, sender, pending, data, utf8)
            except _Temporary as exc:
                last = exc.error
                continue
            accepted.extend(outcome.accepted)
            permanent.update(outcome.permanent)
            deferred = outcome.temporary
            pending = list(deferred)
            if not pending or customer in permanent:
                break
            last = deferred.get(customer) or next(iter(deferred.values()))
        if customer in permanent:
            refused = permanent[customer]
            also = " (the Cc were sent it)" if accepted else ""
            raise SendError(f"{refused}{also}", code=refused.code, retryable=False)
        if customer not in accepted:
            assert last is not None
            raise SendError(f"{last}, {attempts} attempts", code=last.code, retryable=True)
        problems = {**permanent, **deferred}
        return "; ".join(f"cc {address}: {error}" for address, error in problems.items())[:2000]

    def _client(self, relay: Relay) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(
            hostname=relay.host,
            port=relay.port,
            username=relay.user,
            password=relay.password,
            use_tls=relay.security == "tls",
            start_tls=relay.security == "starttls",
            tls_context=self._tls_context() if relay.security != "none" else None,
            timeout=self.settings.timeout,
            local_hostname=self.settings.helo_name or self.signer.domain,
        )

    async def _connect(self, client: aiosmtplib.SMTP) -> None:
        """Connect, greet, secure and log in; _Temporary for what may pass, SendError for
        what will not (5xx, a certificate that does not verify, a missing extension)."""
        try:
            await client.connect()
        except aiosmtplib.SMTPResponseException as exc:
            raise _answered(exc, "connecting") from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(
                exc.__cause__, ssl.SSLCertVerificationError
            ):
                raise SendError(f"relay certificate rejected: {exc}", code="tls") from exc
            code = "timeout" if isinstance(exc, TimeoutError) else "network"
            raise _Temporary(
                SendError(f"relay unreachable: {exc}", code=code, retryable=True)
            ) from exc
        except aiosmtplib.SMTPException as exc:  # e.g. no STARTTLS, no AUTH mechanism
            raise SendError(f"relay refused the session: {exc}", code="relay") from exc

    async def _transaction(
        self, relay: Relay, sender: str, recipients: list[str], data: bytes, utf8: bool
    ) -> _Outcome:
        client = self._client(relay)
        self._clients.add(client)
        try:
            await self._connect(client)
            return await self._mail(client, sender, recipients, data, utf8)
        finally:
            self._clients.discard(client)
            await self._hang_up(client)

    async def _mail(
        self,
        client: aiosmtplib.SMTP,
        sender: str,
        recipients: list[str],
        data: bytes,
        utf8: bool,
    ) -> _Outcome:
        """MAIL, RCPT for each recipient, DATA when one was accepted."""
        options: list[str] = []
        encoding = "ascii"
        if utf8:
            if not client.supports_extension("smtputf8"):
                raise SendError(
                    "an address is not ASCII and the relay does not offer SMTPUTF8",
                    code="smtputf8",
                )
            options.append("SMTPUTF8")
            encoding = "utf-8"
        if client.supports_extension("size"):
            options.append(f"SIZE={len(data)}")
        outcome = _Outcome(accepted=[], temporary={}, permanent={})
        try:
            await client.mail(sender, options=options, encoding=encoding)
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    error = _reply_error(exc, "recipient")
                    bucket = outcome.temporary if error.retryable else outcome.permanent
                    bucket[recipient] = error
                else:
                    outcome.accepted.append(recipient)
            if not outcome.accepted:
                return outcome
        except aiosmtplib.SMTPResponseException as exc:
            raise _answered(exc, "sender") from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            raise _Temporary(
                SendError(f"relay connection lost: {exc}", code="network", retryable=True)
            ) from exc
        try:
            await client.data(data)
        except aiosmtplib.SMTPResponseException as exc:
            raise _answered(exc, "data") from exc
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            code = "timeout" if isinstance(exc, TimeoutError) else "network"
            raise SendError(
                f"relay connection lost during DATA, the message may have been sent: {exc}",
                code=code,
                retryable=True,
            ) from exc
        return outcome

    @staticmethod
    async def _hang_up(client: aiosmtplib.SMTP) -> None:
        """QUIT politely; whatever that answers, the connection is closed."""
        if client.is_connected:
            try:
                await client.quit(timeout=5)
            except (aiosmtplib.SMTPException, OSError):
                pass
        client.close()

    async def close(self) -> None:
        """Close connections still open (a send cancelled mid-transaction)."""
        clients, self._clients = list(self._clients), set()
        for client in clients:
            client.close()

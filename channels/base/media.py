"""Media a platform holds for a message (a photo sent on Messenger, a Telegram voice note):
fetched by the hub, with the platform's token, from the platform's own hosts only, within a
size limit, and kept in the hub's blob store like an email's attachment.

Only hosts the adapter names are fetched from (by suffix: ``fbcdn.net`` takes
``scontent.xx.fbcdn.net``), over https, without following redirects elsewhere: a payload cannot
make the hub fetch an address of its choosing. A server error or a dropped connection is tried
again with back-off; what still fails raises ``MediaUnavailable`` for the adapter to record
(the message is kept, its attachment marked unavailable, for an agent to retry: an adapter
that fetches media is a ``MediaAdapter`` and fetches one attachment again on request)."""

from __future__ import annotations

import asyncio
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from channels.base.adapter import ChannelAdapter
from channels.base.http import ReusedClient
from schemas import Attachment, Interaction

#: Largest file fetched unless the adapter says otherwise (WhatsApp's own limit is 100 MB).
MAX_BYTES = 25 * 1024 * 1024
#: Attempts at a download that fails for a reason that may pass (5xx, 429, a network error).
ATTEMPTS = 3
FIRST_BACKOFF = 0.5


class MediaRefused(ValueError):
    """Never to be fetched: a host not the platform's, not https, or too large."""


class MediaUnavailable(OSError):
    """The platform did not give the file after every attempt (or refused it for good)."""


@dataclass(frozen=True)
class Media:
    """A fetched file."""

    data: bytes
    content_type: str


class MediaAdapter(ChannelAdapter):
    """A channel whose messages' files the hub fetches from the platform. A file that could
    not be had when its message arrived stays listed without its ``blob``; an agent's retry
    calls ``refetch`` (in the web process) and stores what it returns."""

    @abstractmethod
    async def refetch(self, attachment: Attachment, interaction: Interaction) -> Media:
        """The file of ``attachment`` (one of the stored ``interaction``'s) fetched again from
        what the adapter recorded in it (``provider_id``, ``url``), of the type the adapter
        would have stored; MediaUnavailable or MediaRefused with a reason an agent can read."""


def allowed(url: str, hosts: Sequence[str], schemes: Sequence[str] = ("https",)) -> bool:
    """Whether ``url`` is on one of ``hosts`` (the host itself or a subdomain), by a scheme of
    ``schemes`` (https; a test's loopback server may add http)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme not in schemes or not host or parts.username or parts.password:
        return False
    return any(host == h or host.endswith("." + h) for h in (h.lower() for h in hosts))


@dataclass
class MediaFetcher:
    """Downloads media from a platform's hosts (one client, reused)."""

    hosts: Sequence[str]
    max_bytes: int = MAX_BYTES
    schemes: Sequence[str] = ("https",)
    timeout: float = 30.0
    backoff: float = FIRST_BACKOFF
    _http: ReusedClient = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._http = ReusedClient(self.timeout)

    async def close(self) -> None:
        """Close the client."""
        await self._http.close()

    async def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> Media:
        """The file at ``url``; MediaRefused for an address not the platform's or a file over
        the limit, MediaUnavailable when it could not be had."""
        if not allowed(url, self.hosts, self.schemes):
            raise MediaRefused("not one of the platform's hosts")
        delay = self.backoff
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._once(url, headers or {})
            except _Transient as exc:
                if attempt == ATTEMPTS:
                    raise MediaUnavailable(f"the platform did not give the file: {exc}") from exc
                await asyncio.sleep(exc.retry_after or delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def _once(self, url: str, headers: Mapping[str, str]) -> Media:
        try:
            async with self._http().stream("GET", url, headers=headers) as answer:
                if answer.status_code == 429 or answer.status_code >= 500:
                    raise _Transient(f"HTTP {answer.status_code}", _retry_after(answer))
                if answer.status_code != 200:  # a redirect, a refusal: not retried
                    raise MediaUnavailable(f"HTTP {answer.status_code}")
                declared = answer.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise MediaRefused(f"larger than {self.max_bytes} bytes")
                chunks: list[bytes] = []
                size = 0
                async for chunk in answer.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise MediaRefused(f"larger than {self.max_bytes} bytes")
                    chunks.append(chunk)
                kind = answer.headers.get("content-type", "application/octet-stream")
                return Media(b"".join(chunks), kind.split(";")[0].strip().lower()[:255])
        except httpx.TransportError as exc:
            raise _Transient(str(exc) or type(exc).__name__, None) from exc


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _retry_after(answer: httpx.Response) -> float | None:
    value = answer.headers.get("retry-after", "")
    return min(float(value), 60.0) if value.isdigit() else None

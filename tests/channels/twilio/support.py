"""Twilio on the test bench: a stand-in for its REST API, and webhooks signed as Twilio signs.

``FakeTwilio`` is a real HTTP server on loopback that checks what Twilio's Messages endpoint
checks (account path, HTTP basic auth, the form fields) and answers with Twilio's JSON, so the
twilio library on the hub's side talks to it exactly as it would talk to api.twilio.com.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from aiohttp import web
from twilio.request_validator import RequestValidator

from schemas.events import utcnow
from tests.support import eventually

# Copies of the shared Twilio samples, kept in the repository (see samples/PROVENANCE.md).
SAMPLES = Path(__file__).resolve().parent / "samples"

TOKEN = "test_auth_token_0123456789abcdef"  # the token the samples were signed with
ACCOUNT = "ACXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"  # the AccountSid of the samples
PUBLIC_URL = "https://hub.example.com"  # the host the samples were signed for
FROM_NUMBER = "+14155551212"  # our number in the samples (their To)
HELP_TEXT = "Omnihub test line: reply with your question. STOP to opt out, START to opt in."
FORM = "application/x-www-form-urlencoded"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def twilio_env(api_port: int) -> dict[str, str]:
    """The Twilio adapter's settings for component processes, REST calls to the fake."""
    return {
        "TWILIO_ACCOUNT_SID": ACCOUNT,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{api_port}",
        "TWILIO_HELP_TEXT": HELP_TEXT,
        "TWILIO_SEND_BACKOFF": "0.05",
        "OMNIHUB_PUBLIC_URL": PUBLIC_URL,
    }


# --- webhooks as Twilio sends them --------------------------------------------------------


def sample_form(name: str) -> dict[str, str]:
    """A form sample of ``samples/`` as parameters (the file's final newline is not part of
    the body Twilio signed)."""
    text = (SAMPLES / name).read_text().rstrip("\n")
    return dict(parse_qsl(text, keep_blank_values=True))


def sample_signature(name: str) -> tuple[str, str]:
    """(URL it was signed for, X-Twilio-Signature) of a sample, from signatures.json."""
    meta = json.loads((SAMPLES / "signatures.json").read_text())["files"][name]
    return meta["url"], meta["X-Twilio-Signature"]


def sign(path: str, params: dict[str, str], token: str = TOKEN) -> str:
    """X-Twilio-Signature of a POST to the hub's public ``/channels/twilio/<path>``."""
    return RequestValidator(token).compute_signature(f"{PUBLIC_URL}/channels/twilio/{path}", params)


async def post_webhook(
    http: httpx.AsyncClient,
    path: str,
    params: dict[str, str],
    *,
    signature: str | None = None,
    body: str | None = None,
) -> httpx.Response:
    """POST a webhook as Twilio does: form body, signed for the public URL (unless given)."""
    headers = {"content-type": FORM}
    signature = sign(path, params) if signature is None else signature
    if signature:
        headers["X-Twilio-Signature"] = signature
    content = urlencode(params) if body is None else body
    return await http.post(f"/channels/twilio/{path}", content=content, headers=headers)


def new_phone() -> str:
    """A French mobile number no other test uses."""
    return "+336" + str(uuid.uuid4().int)[:8]


def new_sid(prefix: str) -> str:
    """A Twilio-shaped id: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


def sms(phone: str, body: str = "Hi my router keeps dropping", **extra: str) -> dict[str, str]:
    """The inbound SMS sample from another number, with a new MessageSid."""
    sid = new_sid("SM")
    return dict(
        sample_form("inbound_sms.form.txt"),
        From=phone,
        Body=body,
        MessageSid=sid,
        SmsSid=sid,
        SmsMessageSid=sid,
        **extra,
    )


async def customer_of(client: httpx.AsyncClient, phone: str) -> dict[str, Any]:
    """The customer known by ``phone``, once the processors created it."""

    async def find() -> Any:
        found = (await client.get("/v1/customers", params={"identity": f"phone:{phone}"})).json()
        return found["customers"][0] if found["customers"] else None

    return await eventually(find)


async def items(client: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    """The customer's timeline, newest first."""
    page = await client.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 200})
    return list(page.json()["items"])


# --- the REST API stand-in ----------------------------------------------------------------


@dataclass
class SentMessage:
    """One request to the Messages endpoint, as the fake saw it."""

    account: str
    auth: tuple[str, str] | None
    form: dict[str, list[str]]
    status: int
    answer: dict[str, Any] = field(default_factory=dict)

    def one(self, name: str) -> str | None:
        """The single value of a form field."""
        values = self.form.get(name) or [None]
        return values[-1]


class FakeTwilio:
    """POST /2010-04-01/Accounts/{AccountSid}/Messages.json, checked and answered as Twilio does."""

    def __init__(self, account: str = ACCOUNT, token: str = TOKEN) -> None:
        self.account = account
        self.token = token
        self.requests: list[SentMessage] = []
        self.invalid_numbers: set[str] = set()
        self.rate_limited: dict[str, int] = {}  # body -> 429 answers still to give

    def with_body(self, text: str) -> list[SentMessage]:
        """Every request whose Body is ``text``."""
        return [r for r in self.requests if r.one("Body") == text]

    @staticmethod
    def _error(status: int, code: int, message: str) -> web.Response:
        return web.json_response(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            },
            status=status,
        )

    def _auth(self, request: web.Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        return user, password

    async def messages(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        auth = self._auth(request)
        form: dict[str, list[str]] = {}
        for name, value in parse_qsl((await request.read()).decode(), keep_blank_values=True):
            form.setdefault(name, []).append(value)
        sent = SentMessage(account, auth, form, 0)
        self.requests.append(sent)
        response = self._answer(request, sent)
        sent.status = response.status
        if response.status < 300:
            sent.answer = json.loads(response.body)
        return response

    def _answer(self, request: web.Request, sent: SentMessage) -> web.Response:
        if sent.auth != (self.account, self.token):
            return self._error(401, 20003, "Authenticate")
        if sent.account != self.account:
            return self._error(404, 20404, "The requested resource was not found")
        if not request.content_type == FORM:
            return self._error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
        to, body = sent.one("To"), sent.one("Body")
        sender, service = sent.one("From"), sent.one("MessagingServiceSid")
        callback = sent.one("StatusCallback")
        if not to:
            return self._error(400, 21604, "A 'To' phone number is required.")
        if not sender and not service:
            return self._error(400, 21603, "A 'From' or 'MessagingServiceSid' is required.")
        if not body:
            return self._error(400, 21602, "Message body is required.")
        if len(body) > 1600:
            return self._error(400, 21617, "The concatenated message body exceeds 1600 chars.")
        if not E164.match(to) or to in self.invalid_numbers:
            return self._error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if callback and urlsplit(callback).scheme not in ("http", "https"):
            return self._error(400, 21609, "Invalid StatusCallback url")
        if self.rate_limited.get(body, 0) > 0:
            self.rate_limited[body] -= 1
            return self._error(429, 20429, "Too Many Requests")
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(utcnow())
        return web.json_response(
            {
                "account_sid": self.account,
                "api_version": "2010-04-01",
                "body": body,
                "date_created": now,
                "date_sent": None,
                "date_updated": now,
                "direction": "outbound-api",
                "error_code": None,
                "error_message": None,
                "from": sender,
                "messaging_service_sid": service,
                "num_media": "0",
                "num_segments": "1",
                "price": None,
                "price_unit": "USD",
                "sid": sid,
                "status": "accepted" if service and not sender else "queued",
                "subresource_uris": {
                    "media": f"/2010-04-01/Accounts/{self.account}/Messages/{sid}/Media.json"
                },
                "to": to,
                "uri": f"/2010-04-01/Accounts/{self.account}/Messages/{sid}.json",
            },
            status=201,
        )

    async def start(self, port: int) -> web.AppRunner:
        """Listen on 127.0.0.1:``port``."""
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", self.messages)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

"""X on the test bench: Account Activity payloads as X posts them (signed with the samples'
consumer secret), and a stand-in for X's API.

``FakeX`` is a real HTTP server on loopback that checks what X checks (the path, the
user-context authorization: an OAuth 1.0a signature recomputed from the request, or the
OAuth 2.0 bearer token; the body's fields) and answers with X's bodies, errors included:
401 ``{"title": "Unauthorized", ...}`` for refused credentials, 429 with
``x-rate-limit-reset``, 403 for a user who does not take the account's DMs. It also serves DM
media under ``/ton/`` (standing in for ton.twitter.com, which wants the same authorization).
"""

from __future__ import annotations

import copy
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from channels.x.oauth import parse_header, signature
from channels.x.verify import SIGNATURE_HEADER, digest

# Copies of the shared X samples, kept in the repository (see samples/PROVENANCE.md).
SAMPLES = Path(__file__).resolve().parent / "samples"

#: The samples' consumer secret (signatures.json, crc_check.http); the rest is made up.
CONSUMER_SECRET = "z3ZX4v7mAAUGykl3EcmkqbartmuW8VFOOzCloLx9Q45P0hLrFu"
CONSUMER_KEY = "xTestConsumerKey0123456789"
ACCESS_TOKEN = "4337869213-xTestAccessToken0123456789abcdef"
ACCESS_TOKEN_SECRET = "xTestAccessTokenSecret0123456789abcdefABCDEF"
BEARER = "xTestOAuth2UserToken0123456789"
#: The samples' account (``for_user_id``) and customer.
ACCOUNT = "4337869213"
CUSTOMER = "3001969357"
#: The hub's own app: DMs the account sent through it are echoes of the hub's replies.
APP_ID = "26600001"
#: The app that sent the samples' DM (another app: the account writing from elsewhere).
OTHER_APP = "13090192"
WEBHOOK = "/channels/x/webhook"
HEADER = SIGNATURE_HEADER
#: A small JPEG-like file the fake serves as DM media.
PHOTO = b"\xff\xd8\xff\xe0" + b"omnihub x test photo" * 64 + b"\xff\xd9"


def x_env(api_port: int) -> dict[str, str]:
    """The X adapter's settings for component processes: on, API calls and media to the fake."""
    return {
        "X_ENABLED": "true",
        "X_CONSUMER_KEY": CONSUMER_KEY,
        "X_CONSUMER_SECRET": CONSUMER_SECRET,
        "X_ACCESS_TOKEN": ACCESS_TOKEN,
        "X_ACCESS_TOKEN_SECRET": ACCESS_TOKEN_SECRET,
        "X_USER_ID": ACCOUNT,
        "X_APP_ID": APP_ID,
        "X_API_BASE_URL": f"http://127.0.0.1:{api_port}",
        "X_MEDIA_HOSTS": "127.0.0.1",
        "X_SEND_BACKOFF": "0.05",
        "X_MAX_RETRY_AFTER": "5",
    }


# --- payloads as X posts them --------------------------------------------------------------


def sample_bytes(name: str) -> bytes:
    """A sample exactly as it is (its signature in signatures.json is over these bytes)."""
    return (SAMPLES / name).read_bytes()


def sample(name: str = "aaa_direct_message_events.json") -> dict[str, Any]:
    """A JSON sample as a dict."""
    return dict(json.loads(sample_bytes(name)))


def sample_signature(name: str = "aaa_direct_message_events.json") -> str:
    """The signature signatures.json gives for a sample."""
    found = json.loads(sample_bytes("signatures.json"))
    return str(found[name][SIGNATURE_HEADER])


def new_id() -> str:
    """An X snowflake-like id no other test uses."""
    return str(random.randint(10**17, 10**18))


def new_user() -> str:
    """An X user id no other test uses."""
    return str(random.randint(10**9, 9 * 10**9))


def dm(
    user: str | None = None,
    text: str = "Hello World!",
    *,
    event_id: str | None = None,
    own: bool = False,
    app: str = OTHER_APP,
    media: dict[str, Any] | None = None,
    quick_reply: str | None = None,
) -> dict[str, Any]:
    """The DM sample for ``user`` (a new one by default), with a new event id: written by the
    user to the account, or with ``own`` by the account to the user through ``app``."""
    body = copy.deepcopy(sample())
    user = user or new_user()
    [event] = body["direct_message_events"]
    event["id"] = event_id or new_id()
    event["created_timestamp"] = str(int(time.time() * 1000))
    create = event["message_create"]
    create["sender_id"], create["target"]["recipient_id"] = (
        (ACCOUNT, user) if own else (user, ACCOUNT)
    )
    create["source_app_id"] = app
    create["message_data"]["text"] = text
    if media is not None:
        create["message_data"]["attachment"] = {"type": "media", "media": media}
    if quick_reply is not None:
        create["message_data"]["quick_reply_response"] = {
            "type": "options",
            "metadata": quick_reply,
        }
    profile = dict(body["users"].pop(CUSTOMER), id=user, screen_name=f"user{user}")
    body["users"][user] = profile
    return body


def photo(url: str, link: str = "https://t.co/abcDEF123") -> dict[str, Any]:
    """A DM's ``attachment.media`` for a photo at ``url`` (X's shape)."""
    media_id = new_id()
    return {
        "id": int(media_id),
        "id_str": media_id,
        "indices": [0, 0],
        "media_url": url.replace("https:", "http:"),
        "media_url_https": url,
        "url": link,
        "display_url": "pic.twitter.com/abcDEF123",
        "expanded_url": "https://twitter.com/messages/media/" + media_id,
        "type": "photo",
        "sizes": {"large": {"w": 800, "h": 600, "resize": "fit"}},
    }


def read_event(reader: str, last_read: str) -> dict[str, Any]:
    """``reader`` read the conversation up to event ``last_read``."""
    return {
        "for_user_id": ACCOUNT,
        "direct_message_mark_read_events": [
            {
                "created_timestamp": str(int(time.time() * 1000)),
                "sender_id": reader,
                "target": {"recipient_id": ACCOUNT if reader != ACCOUNT else CUSTOMER},
                "last_read_event_id": last_read,
            }
        ],
        "users": {},
    }


def signed(body: dict[str, Any] | bytes, secret: str = CONSUMER_SECRET) -> tuple[bytes, str]:
    """The body's bytes and their ``x-twitter-webhooks-signature``."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return content, digest(secret, content)


async def post_event(
    http: httpx.AsyncClient,
    body: dict[str, Any] | bytes,
    signature_value: str | None = "",
) -> httpx.Response:
    """POST a payload as X does (JSON, signed unless ``signature_value`` is None; "" signs it
    with the samples' secret)."""
    content, good = signed(body)
    headers = {"content-type": "application/json"}
    if signature_value is not None:
        headers[SIGNATURE_HEADER] = signature_value or good
    return await http.post(WEBHOOK, content=content, headers=headers)


async def customer_of(client: httpx.AsyncClient, user: str) -> dict[str, Any]:
    """The customer known by X ``user`` of the test account, once the processors made it."""
    from tests.support import eventually

    async def find() -> Any:
        query = {"identity": f"x:{ACCOUNT}:{user}"}
        found = (await client.get("/v1/customers", params=query)).json()
        return found["customers"][0] if found["customers"] else None

    return await eventually(find, timeout=30)


async def items(client: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    """The customer's timeline, newest first."""
    page = await client.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 200})
    return list(page.json()["items"])


# --- the X API stand-in -------------------------------------------------------------------


@dataclass
class Call:
    """One request to the fake, as it saw it."""

    method: str
    path: str
    auth: str
    body: dict[str, Any]
    at: float
    status: int = 0
    answer: dict[str, Any] = field(default_factory=dict)


class FakeX:
    """X API v2's DM create, media upload and users/me, and DM media, checked and answered as
    X does."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        #: credentials refused (a revoked token): every call answers 401
        self.revoked = False
        #: participant id -> seconds until the rate limit resets, one 429 each
        self.rate_limited: dict[str, list[int]] = {}
        #: participants who do not take the account's DMs (403)
        self.closed: set[str] = set()
        #: media path -> (bytes, content type); paths in ``broken`` answer 500
        self.media: dict[str, tuple[bytes, str]] = {}
        self.broken: set[str] = set()
        self.downloads: list[str] = []
        self.uploads: dict[str, bytes] = {}

    def to(self, participant: str) -> list[Call]:
        """Every DM create call to ``participant``."""
        path = f"/2/dm_conversations/with/{participant}/messages"
        return [c for c in self.calls if c.method == "POST" and c.path == path]

    @staticmethod
    def problem(status: int, title: str, detail: str, kind: str = "about:blank") -> web.Response:
        """X's v2 error body."""
        body = {"title": title, "detail": detail, "type": kind, "status": status}
        return web.json_response(body, status=status)

    def _authorized(self, request: web.Request) -> bool:
        """The user-context authorization X checks: the bearer token, or an OAuth 1.0a
        signature over the method, the URL and the query, with the app's and the token's
        secrets."""
        header = request.headers.get("authorization", "")
        if header.startswith("Bearer "):
            return header == f"Bearer {BEARER}"
        oauth = parse_header(header)
        given = oauth.pop("oauth_signature", "")
        if oauth.get("oauth_consumer_key") != CONSUMER_KEY:
            return False
        if oauth.get("oauth_token") != ACCESS_TOKEN:
            return False
        if oauth.get("oauth_signature_method") != "HMAC-SHA1" or not oauth.get("oauth_nonce"):
            return False
        if abs(int(oauth.get("oauth_timestamp", "0")) - time.time()) > 300:
            return False
        url = f"http://{request.host}{request.path}"
        params = [*oauth.items(), *request.query.items()]
        return given == signature(request.method, url, params, CONSUMER_SECRET, ACCESS_TOKEN_SECRET)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = {}
        files: dict[str, tuple[bytes, str]] = {}
        if request.content_type == "application/json":
            body = await request.json()
        elif request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.file.read(), value.content_type)
                else:
                    body[key] = str(value)
        call = Call(
            request.method,
            request.path,
            request.headers.get("authorization", ""),
            body,
            time.monotonic(),
        )
        self.calls.append(call)
        response = self._answer(request, call, files)
        call.status = response.status
        if isinstance(response, web.Response) and response.content_type == "application/json":
            call.answer = json.loads(response.body)  # type: ignore[arg-type]
        return response

    def _answer(
        self, request: web.Request, call: Call, files: dict[str, tuple[bytes, str]]
    ) -> web.StreamResponse:
        if not self._authorized(request) or self.revoked:
            return self.problem(401, "Unauthorized", "Unauthorized")
        if call.path.startswith("/ton/"):
            return self._download(call.path)
        if call.path == "/2/users/me" and call.method == "GET":
            return web.json_response({"data": {"id": ACCOUNT, "name": "Harrison Test"}})
        if call.path == "/2/media/upload" and call.method == "POST":
            return self._upload(call, files)
        parts = call.path.split("/")
        if call.method != "POST" or parts[:3] != ["", "2", "dm_conversations"] or len(parts) != 6:
            return self.problem(404, "Not Found Error", f"Could not find {call.path}")
        participant = parts[4]
        if parts[3] != "with" or parts[5] != "messages" or not participant.isdigit():
            return self.problem(404, "Not Found Error", f"Could not find {call.path}")
        waits = self.rate_limited.get(participant)
        if waits:
            reset = int(time.time()) + waits.pop(0)
            response = self.problem(429, "Too Many Requests", "Too Many Requests")
            response.headers["x-rate-limit-limit"] = "200"
            response.headers["x-rate-limit-remaining"] = "0"
            response.headers["x-rate-limit-reset"] = str(reset)
            return response
        text, attachments = call.body.get("text"), call.body.get("attachments")
        if not text and not attachments:
            return self.problem(
                400,
                "Invalid Request",
                "One or more parameters to your request was invalid.",
                "https://api.twitter.com/2/problems/invalid-request",
            )
        if isinstance(text, str) and len(text) > 10_000:
            return self.problem(400, "Invalid Request", "text is longer than 10000 characters")
        if attachments is not None and (
            not isinstance(attachments, list)
            or len(attachments) != 1
            or attachments[0].get("media_id") not in self.uploads
        ):
            return self.problem(400, "Invalid Request", "attachments: unknown media_id")
        if participant in self.closed:
            return self.problem(
                403, "Forbidden", "You are not allowed to send Direct Messages to this user."
            )
        conversation = "-".join(sorted((ACCOUNT, participant), key=int))
        data = {"dm_conversation_id": conversation, "dm_event_id": new_id()}
        return web.json_response({"data": data}, status=201)

    def _upload(self, call: Call, files: dict[str, tuple[bytes, str]]) -> web.Response:
        if "media" not in files or call.body.get("media_category") not in ("dm_image", "dm_gif"):
            return self.problem(400, "Invalid Request", "media and media_category are required")
        media_id = new_id()
        self.uploads[media_id] = files["media"][0]
        data = {
            "id": media_id,
            "media_key": f"3_{media_id}",
            "size": len(files["media"][0]),
            "expires_after_secs": 86400,
        }
        return web.json_response({"data": data})

    def _download(self, path: str) -> web.Response:
        self.downloads.append(path)
        if path in self.broken:
            return web.Response(status=500, text="Internal Server Error")
        found = self.media.get(path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        return web.Response(body=found[0], content_type=found[1])

    async def start(self, port: int) -> web.AppRunner:
        """Listen on 127.0.0.1:``port``."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

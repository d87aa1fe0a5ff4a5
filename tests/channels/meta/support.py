"""Meta on the test bench: webhooks signed as Meta signs them, and a stand-in for the Graph API.

``FakeGraph`` is a real HTTP server on loopback (aiohttp) that checks what the Graph API
checks (the version in the path, the bearer token, the object id, the body's required fields)
and answers with Meta's bodies, its error bodies included. It also plays Meta's CDN (``/cdn``)
and WhatsApp's media downloads (``/media``), which need the token.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

from tests.support import eventually

# Copies of the shared Meta samples, kept in the repository (see samples/PROVENANCE.md).
SAMPLES = Path(__file__).resolve().parent / "samples"

APP_SECRET = "test_app_secret_0123456789abcdef"  # what the samples were signed with
VERIFY_TOKEN = "meatyhamhock"  # Meta's Getting-Started example (verification_get.http)
APP_ID = "1234567890123456"
PAGE_ID = "682498302938465"  # the samples' page
IG_ACCOUNT = "17841405822304914"  # the samples' Instagram account
PHONE_NUMBER_ID = "106540352242922"  # the samples' WhatsApp business number
PAGE_TOKEN = "EAAtestpagetoken0123456789"
WA_TOKEN = "EAAtestwhatsapptoken0123456789"
VERSION = "v21.0"
PNG = b"\x89PNG\r\n\x1a\n" + b"meta-test-image" * 10


def meta_env(graph_port: int) -> dict[str, str]:
    """The Meta adapter's settings for component processes, the Graph API on the fake."""
    base = f"http://127.0.0.1:{graph_port}"
    return {
        "META_APP_SECRET": APP_SECRET,
        "META_VERIFY_TOKEN": VERIFY_TOKEN,
        "META_APP_ID": APP_ID,
        "META_ACCESS_TOKEN": PAGE_TOKEN,
        "META_WHATSAPP_TOKEN": WA_TOKEN,
        "META_WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID,
        "META_GRAPH_BASE_URL": base,
        "META_GRAPH_VERSION": VERSION,
        "META_MEDIA_HOSTS": json.dumps(["127.0.0.1", "fbcdn.net", "fbsbx.com"]),
        "META_MEDIA_INSECURE_HTTP": "true",
        "META_SEND_BACKOFF": "0.05",
        "META_HEALTH_PROBE_SECONDS": "1",
    }


def sample(name: str) -> bytes:
    """A sample's exact bytes (what its signature covers)."""
    return (SAMPLES / name).read_bytes()


def sample_mid(name: str) -> str:
    """The first message id of a Messenger or Instagram sample."""
    return str(json.loads(sample(name))["entry"][0]["messaging"][0]["message"]["mid"])


def sample_signature(name: str) -> str:
    """The sample's X-Hub-Signature-256 from signatures.json."""
    files = json.loads(sample("signatures.json"))["files"]
    return str(files[name]["X-Hub-Signature-256"])


def sign(body: bytes, secret: str = APP_SECRET) -> str:
    """X-Hub-Signature-256 of ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(payload: dict[str, Any]) -> bytes:
    """JSON as Meta sends it (non-ASCII and ``/`` escaped)."""
    return json.dumps(payload).replace("/", "\\/").encode()


async def post_webhook(
    http: httpx.AsyncClient, body: bytes, signature: str | None = None
) -> httpx.Response:
    """POST a webhook as Meta does, signed unless ``signature`` says otherwise."""
    headers = {"content-type": "application/json"}
    signature = sign(body) if signature is None else signature
    if signature:
        headers["X-Hub-Signature-256"] = signature
    return await http.post("/channels/meta/webhook", content=body, headers=headers)


def new_id() -> str:
    """A numeric id no other test uses (a PSID, an IGSID)."""
    return str(uuid.uuid4().int)[:16]


def new_wa_id() -> str:
    """A French mobile number as WhatsApp writes it (no +)."""
    return "336" + str(uuid.uuid4().int)[:8]


def messenger(*items: dict[str, Any], page: str = PAGE_ID, kind: str = "page") -> bytes:
    """A Messenger (or Instagram) webhook body with one entry of ``items``."""
    entry = {"id": page, "time": 1749416383000, "messaging": list(items)}
    return body_of({"object": kind, "entry": [entry]})


def text_item(user: str, mid: str, text: str, page: str = PAGE_ID, **extra: Any) -> dict[str, Any]:
    """A Messenger message item from ``user`` (timestamp: now, so the window is open)."""
    import time

    return {
        "sender": {"id": user},
        "recipient": {"id": page},
        "timestamp": int(time.time() * 1000),
        "message": {"mid": mid, "text": text, **extra},
    }


def whatsapp(messages: list[dict[str, Any]], wa_id: str, name: str = "Test Person") -> bytes:
    """A WhatsApp webhook body with ``messages`` from ``wa_id``."""
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
        "messages": messages,
    }
    change = {"value": value, "field": "messages"}
    return body_of(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    )


async def customer_of(client: httpx.AsyncClient, identity: str) -> dict[str, Any]:
    """The customer known by ``identity`` (``type:scope:value``), once created."""

    async def find() -> Any:
        found = (await client.get("/v1/customers", params={"identity": identity})).json()
        return found["customers"][0] if found.get("customers") else None

    return await eventually(find)


async def items(client: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    """The customer's timeline, newest first."""
    page = await client.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 200})
    return list(page.json()["items"])


# --- the Graph API stand-in ---------------------------------------------------------------


@dataclass
class GraphCall:
    """One request to the fake, as it saw it."""

    method: str
    path: str
    token: str | None
    body: dict[str, Any]
    status: int = 0
    answer: dict[str, Any] = field(default_factory=dict)


class FakeGraph:
    """``/{version}/{id}/messages``, ``/message_attachments``, ``/media``, ``/{media-id}``,
    ``/me``; plus the CDN and media downloads. Tokens can be revoked (error 190) and
    recipients throttled (error 80007 / 130429) for a number of calls."""

    def __init__(self) -> None:
        self.calls: list[GraphCall] = []
        self.tokens = {PAGE_TOKEN: PAGE_ID, WA_TOKEN: PHONE_NUMBER_ID}
        self.revoked: set[str] = set()
        self.throttled: dict[str, int] = {}  # recipient -> throttled answers still to give
        self.media: dict[str, bytes] = {}
        #: CDN file names whose signed address has expired (403, as Meta's CDN answers)
        self.expired: set[str] = set()
        self.port = 0

    def to(self, recipient: str) -> list[GraphCall]:
        """The message sends to ``recipient`` (PSID or phone digits)."""
        return [
            c
            for c in self.calls
            if c.path.endswith("/messages")
            and recipient in ((c.body.get("recipient") or {}).get("id"), c.body.get("to"))
        ]

    @staticmethod
    def error(
        status: int, code: int, message: str, kind: str = "OAuthException", subcode: int = 0
    ) -> web.Response:
        error: dict[str, Any] = {
            "message": message,
            "type": kind,
            "code": code,
            "fbtrace_id": "A" + uuid.uuid4().hex[:22],
        }
        if subcode:
            error["error_subcode"] = subcode
        return web.json_response({"error": error}, status=status)

    def _token(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:]
        return request.query.get("access_token")

    def _auth(self, request: web.Request, token: str | None) -> web.Response | None:
        if request.match_info.get("version") != VERSION:
            return self.error(400, 2635, f"Unknown API version {request.match_info.get('version')}")
        if not token:
            return self.error(400, 2500, "An active access token must be used")
        if token in self.revoked:
            return self.error(
                401,
                190,
                "Error validating access token: The session has been invalidated",
                subcode=460,
            )
        if token not in self.tokens:
            return self.error(401, 190, "Invalid OAuth access token - Cannot parse access token")
        return None

    async def _record(self, request: web.Request) -> GraphCall:
        body: dict[str, Any] = {}
        if request.content_type == "application/json":
            body = await request.json()
        elif request.content_type.startswith("multipart/"):
            form = await request.post()
            body = {
                k: (v if isinstance(v, str) else f"<file {v.filename}>") for k, v in form.items()
            }
        call = GraphCall(request.method, request.path, self._token(request), body)
        self.calls.append(call)
        return call

    async def messages(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        response = self._messages(request, call)
        call.status = response.status
        if response.status < 300:
            call.answer = json.loads(response.body)  # type: ignore[arg-type]
        return response

    def _messages(self, request: web.Request, call: GraphCall) -> web.Response:
        refused = self._auth(request, call.token)
        if refused is not None:
            return refused
        owner = request.match_info["id"]
        body = call.body
        if owner != self.tokens[call.token or ""]:
            return self.error(
                400, 100, f"(#100) Object with ID '{owner}' does not exist", "GraphMethodException"
            )
        if owner == PHONE_NUMBER_ID:  # WhatsApp
            if body.get("messaging_product") != "whatsapp":
                return self.error(400, 100, "(#100) The parameter messaging_product is required.")
            to, kind = str(body.get("to") or ""), body.get("type")
            if not to.isdigit():
                return self.error(400, 131009, "(#131009) Parameter value is not valid")
            if kind not in ("text", "template", "image", "document", "audio", "video"):
                return self.error(400, 100, "(#100) Invalid parameter type")
            if kind == "text" and not (body.get("text") or {}).get("body"):
                return self.error(400, 100, "(#100) The parameter text['body'] is required.")
            if kind == "template" and not (body.get("template") or {}).get("name"):
                return self.error(400, 100, "(#100) The parameter template['name'] is required.")
            if self.throttled.get(to, 0) > 0:
                self.throttled[to] -= 1
                return self.error(429, 130429, "(#130429) Rate limit hit", "OAuthException")
            return web.json_response(
                {
                    "messaging_product": "whatsapp",
                    "contacts": [{"input": to, "wa_id": to}],
                    "messages": [{"id": "wamid." + uuid.uuid4().hex.upper()}],
                }
            )
        recipient = (body.get("recipient") or {}).get("id")
        message = body.get("message") or {}
        if not recipient:
            return self.error(400, 100, "(#100) The parameter recipient is required")
        if not message.get("text") and not message.get("attachment"):
            return self.error(400, 100, "(#100) Must send either message or sender action")
        if body.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return self.error(400, 100, "(#100) messaging_type is required")
        if body.get("messaging_type") == "MESSAGE_TAG" and body.get("tag") != "HUMAN_AGENT":
            return self.error(400, 100, "(#100) Invalid tag")
        if self.throttled.get(recipient, 0) > 0:
            self.throttled[recipient] -= 1
            return self.error(
                400, 80007, "(#80007) There have been too many messages", "OAuthException"
            )
        return web.json_response({"recipient_id": recipient, "message_id": "m_" + uuid.uuid4().hex})

    async def attachments(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        refused = self._auth(request, call.token)
        if refused is not None:
            return refused
        if "filedata" not in call.body or "message" not in call.body:
            return self.error(400, 100, "(#100) Upload attachment failure.")
        return web.json_response({"attachment_id": str(uuid.uuid4().int)[:15]})

    async def upload_media(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        refused = self._auth(request, call.token)
        if refused is not None:
            return refused
        if call.body.get("messaging_product") != "whatsapp" or "file" not in call.body:
            return self.error(400, 100, "(#100) The parameter messaging_product is required.")
        return web.json_response({"id": str(uuid.uuid4().int)[:15]})

    async def me(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        refused = self._auth(request, call.token)
        if refused is not None:
            return refused
        return web.json_response({"id": self.tokens[call.token or ""], "name": "Test Page"})

    async def media_info(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        refused = self._auth(request, call.token)
        if refused is not None:
            return refused
        media_id = request.match_info["id"]
        if media_id not in self.media:
            return self.error(404, 100, f"(#100) Object with ID '{media_id}' does not exist")
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": f"http://127.0.0.1:{self.port}/media/{media_id}",
                "mime_type": "image/png",
                "sha256": hashlib.sha256(self.media[media_id]).hexdigest(),
                "file_size": len(self.media[media_id]),
                "id": media_id,
            }
        )

    async def download(self, request: web.Request) -> web.Response:
        if self._token(request) != WA_TOKEN:
            return web.Response(status=401)
        data = self.media.get(request.match_info["id"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="image/png")

    async def cdn(self, request: web.Request) -> web.Response:
        if request.match_info["name"] in self.expired:
            return web.Response(status=403, text="URL signature expired")
        return web.Response(body=PNG, content_type="image/png")

    async def start(self, port: int) -> web.AppRunner:
        """Listen on 127.0.0.1:``port``."""
        self.port = port
        app = web.Application()
        app.router.add_post("/{version}/{id}/messages", self.messages)
        app.router.add_post("/{version}/{id}/message_attachments", self.attachments)
        app.router.add_post("/{version}/{id}/media", self.upload_media)
        app.router.add_get("/{version}/me", self.me)
        app.router.add_get("/media/{id}", self.download)
        app.router.add_get("/cdn/{name}", self.cdn)
        app.router.add_get("/{version}/{id}", self.media_info)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

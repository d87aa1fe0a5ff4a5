"""Telegram on the test bench: updates as the Bot API posts them, and a stand-in for the Bot
API itself.

``FakeBotApi`` is a real HTTP server on loopback that checks what the Bot API checks (the
token in the path, the method, the required fields, the chat) and answers as Telegram does,
errors included (``{"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked
by the user"}``, 429 with ``parameters.retry_after``); it also serves files as
``/file/bot<token>/<file_path>`` after ``getFile``.
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

from tests.support import eventually

# Copies of the shared Telegram samples, kept in the repository (see samples/PROVENANCE.md).
SAMPLES = Path(__file__).resolve().parent / "samples"

BOT_ID = "123456789"
TOKEN = f"{BOT_ID}:AAtestTokenForTheFakeBotApi_0123456789"  # made up: the samples have none
SECRET = "hub_tg_secret_0123456789-abc_DEF"  # the samples' secret_token
HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK = "/channels/telegram/webhook"
#: A small JPEG-like file the fake serves as the sample photo's largest size.
PHOTO = b"\xff\xd8\xff\xe0" + b"omnihub test photo" * 64 + b"\xff\xd9"


def telegram_env(api_port: int, groups: str = "ignore") -> dict[str, str]:
    """The Telegram adapter's settings for component processes, Bot API calls to the fake."""
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE_URL": f"http://127.0.0.1:{api_port}",
        "TELEGRAM_GROUPS": groups,
        "TELEGRAM_SEND_BACKOFF": "0.05",
    }


# --- updates as Telegram posts them -------------------------------------------------------


def sample_http() -> tuple[dict[str, str], bytes]:
    """The headers and body of ``update_text_message.http``."""
    head, _, body = (SAMPLES / "update_text_message.http").read_bytes().partition(b"\n\n")
    headers = dict(line.split(": ", 1) for line in head.decode().splitlines()[1:] if ": " in line)
    return headers, body.rstrip(b"\n")


def sample(name: str) -> dict[str, Any]:
    """A JSON sample (``update_reply_with_photo.json``), or the body of the .http one."""
    if name.endswith(".http"):
        return dict(json.loads(sample_http()[1]))
    return dict(json.loads((SAMPLES / name).read_text()))


def new_user() -> int:
    """A Telegram user id no other test uses."""
    return random.randint(10**9, 8 * 10**9)


def new_update_id() -> int:
    """An update id no other test uses."""
    return random.randint(10**6, 2 * 10**9)


def _rewrite(message: dict[str, Any], user: int) -> None:
    for key in ("from", "chat"):
        if key in message:
            message[key]["id"] = user
    if "reply_to_message" in message:
        _rewrite(message["reply_to_message"], user)


def update(
    name: str = "update_text_message.http", user: int | None = None, **message: Any
) -> dict[str, Any]:
    """A sample update for ``user`` (a new one by default) in their private chat, with a new
    update id and message id, and ``message``'s fields changed."""
    body = copy.deepcopy(sample(name))
    user = user or new_user()
    body["update_id"] = new_update_id()
    found = body["message"]
    found["message_id"] = random.randint(2, 10**6)
    _rewrite(found, user)
    found.update(message)
    return body


def edited(original: dict[str, Any], text: str, at: int) -> dict[str, Any]:
    """The ``edited_message`` update of ``original``'s message, with the new text."""
    message = dict(copy.deepcopy(original["message"]), text=text, edit_date=at)
    return {"update_id": new_update_id(), "edited_message": message}


def callback(user: int, data: str, on_message: int = 77) -> dict[str, Any]:
    """A button press on the bot's message ``on_message`` in ``user``'s chat."""
    person = {"id": user, "is_bot": False, "first_name": "Test", "language_code": "en"}
    return {
        "update_id": new_update_id(),
        "callback_query": {
            "id": str(random.randint(10**15, 10**16)),
            "from": person,
            "message": {
                "message_id": on_message,
                "from": {"id": int(BOT_ID), "is_bot": True, "first_name": "Omnihub"},
                "chat": {"id": user, "first_name": "Test", "type": "private"},
                "date": 1441645600,
                "text": "How did we do?",
            },
            "chat_instance": "-1234567890123456789",
            "data": data,
        },
    }


def in_group(user: int, text: str) -> dict[str, Any]:
    """A message ``user`` wrote in a supergroup the bot is in."""
    body = update(user=user, text=text)
    body["message"]["chat"] = {"id": -1001234567890, "title": "Customers", "type": "supergroup"}
    return body


async def post_update(
    http: httpx.AsyncClient, body: dict[str, Any] | bytes, secret: str | None = SECRET
) -> httpx.Response:
    """POST an update as the Bot API does: JSON, with the secret token header (unless None)."""
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers[HEADER] = secret
    return await http.post(WEBHOOK, content=content, headers=headers)


async def customer_of(client: httpx.AsyncClient, user: int) -> dict[str, Any]:
    """The customer known by Telegram ``user`` of the test bot, once the processors made it."""

    async def find() -> Any:
        query = {"identity": f"telegram:{BOT_ID}:{user}"}
        found = (await client.get("/v1/customers", params=query)).json()
        return found["customers"][0] if found["customers"] else None

    return await eventually(find, timeout=30)


async def items(client: httpx.AsyncClient, customer_id: str) -> list[dict[str, Any]]:
    """The customer's timeline, newest first."""
    page = await client.get(f"/v1/customers/{customer_id}/timeline", params={"limit": 200})
    return list(page.json()["items"])


# --- the Bot API stand-in -------------------------------------------------------------------


@dataclass
class Call:
    """One request to a Bot API method, as the fake saw it."""

    token: str
    method: str
    params: dict[str, str]
    files: dict[str, tuple[str, bytes, str]]
    at: float
    status: int = 0
    answer: dict[str, Any] = field(default_factory=dict)


class FakeBotApi:
    """``/bot<token>/<method>`` and ``/file/bot<token>/<path>``, checked and answered as the
    Bot API does."""

    def __init__(self, token: str = TOKEN) -> None:
        self.token = token
        self.calls: list[Call] = []
        #: file_id -> (file_path, bytes, content type)
        self.files: dict[str, tuple[str, bytes, str]] = {}
        #: file_ids whose download fails (HTTP 500) every time
        self.broken: set[str] = set()
        self.downloads: list[str] = []
        self.blocked: set[int] = set()
        #: chat id -> the retry_after values of the 429 answers still to give
        self.rate_limited: dict[int, list[int]] = {}
        #: chat id -> how many calls still answer 500 (Telegram's own trouble)
        self.failing: dict[int, int] = {}
        self._next = 1000

    def to(self, chat: int, method: str = "sendMessage") -> list[Call]:
        """Every call of ``method`` to ``chat``."""
        return [
            c for c in self.calls if c.method == method and c.params.get("chat_id") == str(chat)
        ]

    @staticmethod
    def _error(status: int, description: str, **parameters: int) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return web.json_response(body, status=status)

    async def _params(
        self, request: web.Request
    ) -> tuple[dict[str, str], dict[str, tuple[str, bytes, str]]]:
        params = {k: v for k, v in request.query.items()}
        files: dict[str, tuple[str, bytes, str]] = {}
        if request.content_type == "application/json":
            body = await request.json()
            params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in body.items()})
        elif request.method == "POST":
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = (value.filename, value.file.read(), value.content_type)
                else:
                    params[key] = str(value)
        return params, files

    async def method(self, request: web.Request) -> web.Response:
        params, files = await self._params(request)
        call = Call(
            request.match_info["token"],
            request.match_info["method"],
            params,
            files,
            time.monotonic(),
        )
        self.calls.append(call)
        response = self._answer(call)
        call.status = response.status
        call.answer = json.loads(response.body)  # type: ignore[arg-type]
        return response

    def _message(self, chat: int, **content: Any) -> web.Response:
        self._next += 1
        result = {
            "message_id": self._next,
            "from": {
                "id": int(BOT_ID),
                "is_bot": True,
                "first_name": "Omnihub Test",
                "username": "omnihub_test_bot",
            },
            "chat": {"id": chat, "first_name": "Test", "type": "private"},
            "date": int(time.time()),
            **content,
        }
        return web.json_response({"ok": True, "result": result})

    def _chat(self, call: Call) -> int | web.Response:
        value = call.params.get("chat_id", "")
        if not value:
            return self._error(400, "Bad Request: chat_id is empty")
        if not value.lstrip("-").isdigit():
            return self._error(400, "Bad Request: chat not found")
        chat = int(value)
        if chat in self.blocked:
            return self._error(403, "Forbidden: bot was blocked by the user")
        if self.failing.get(chat, 0) > 0:
            self.failing[chat] -= 1
            return self._error(500, "Internal Server Error")
        waits = self.rate_limited.get(chat)
        if waits:
            wait = waits.pop(0)
            return self._error(429, f"Too Many Requests: retry after {wait}", retry_after=wait)
        return chat

    def _answer(self, call: Call) -> web.Response:
        if call.token != self.token:
            return self._error(401, "Unauthorized")
        if call.method == "getFile":
            found = self.files.get(call.params.get("file_id", ""))
            if found is None:
                return self._error(400, "Bad Request: invalid file_id")
            path, data, _ = found
            file_id = call.params["file_id"]
            return web.json_response(
                {
                    "ok": True,
                    "result": {
                        "file_id": file_id,
                        "file_unique_id": "u" + file_id[-6:],
                        "file_size": len(data),
                        "file_path": path,
                    },
                }
            )
        if call.method == "answerCallbackQuery":
            if not call.params.get("callback_query_id"):
                return self._error(400, "Bad Request: query_id_invalid")
            return web.json_response({"ok": True, "result": True})
        if call.method not in ("sendMessage", "sendPhoto", "sendDocument"):
            return self._error(404, "Not Found")
        chat = self._chat(call)
        if isinstance(chat, web.Response):
            return chat
        if call.method == "sendMessage":
            text = call.params.get("text", "")
            if not text.strip():
                return self._error(400, "Bad Request: message text is empty")
            if len(text) > 4096:
                return self._error(400, "Bad Request: message is too long")
            return self._message(chat, text=text)
        kind = "photo" if call.method == "sendPhoto" else "document"
        if kind not in call.files:
            return self._error(400, f"Bad Request: there is no {kind} in the request")
        name, data, mime = call.files[kind]
        if kind == "photo":
            sizes = [
                {
                    "file_id": f"AgAC{self._next}",
                    "file_unique_id": f"AQAD{self._next}",
                    "file_size": len(data),
                    "width": 800,
                    "height": 600,
                }
            ]
            return self._message(chat, photo=sizes)
        document = {
            "file_id": f"BQAC{self._next}",
            "file_unique_id": f"AgAD{self._next}",
            "file_name": name,
            "mime_type": mime,
            "file_size": len(data),
        }
        return self._message(chat, document=document)

    async def file(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return self._error(404, "Not Found")
        path = request.match_info["path"]
        self.downloads.append(path)
        for file_id, (known, data, kind) in self.files.items():
            if known == path:
                if file_id in self.broken:
                    return web.Response(status=500, text="Internal Server Error")
                return web.Response(body=data, content_type=kind)
        return self._error(404, "Not Found")

    async def start(self, port: int) -> web.AppRunner:
        """Listen on 127.0.0.1:``port``."""
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self.method)
        app.router.add_get("/file/bot{token}/{path:.+}", self.file)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

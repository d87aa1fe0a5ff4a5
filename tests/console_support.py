"""Console test support: users, an HTTP client that carries the session cookie, Chromium."""

from __future__ import annotations

import re
from collections.abc import Sequence
from http.cookies import SimpleCookie
from typing import Any

import asyncpg
import httpx

from schemas import Department
from services.console import sessions, users
from services.console.auth_pages import PRE_COOKIE
from tests.support import installed, unique

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')
_PRE = re.compile(r'name="pre_token" value="([^"]+)"')


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get when missing (CI runs as root)."""
    return installed(CHROMIUM, "chromium")


async def make_user(pool: asyncpg.Pool, role: str, departments: Sequence[str] = ()) -> users.User:
    """A new console user with PASSWORD."""
    async with pool.acquire() as conn:
        return await users.create_user(
            conn,
            unique(role).lower(),
            PASSWORD,
            users.ConsoleRole(role),
            [Department(d) for d in departments],
        )


def csrf_of(html: str) -> str:
    """The CSRF token a console page embeds in its forms."""
    found = _CSRF.search(html)
    assert found, "no CSRF token on the page"
    return found[1]


class ConsoleHttp:
    """An HTTP client signed in to the console.

    The hub marks its cookies Secure (the tests' OMNIHUB_PUBLIC_URL is https), which httpx's
    cookie jar would not send over http://127.0.0.1, so the cookies are carried by hand.
    """

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=30, follow_redirects=False)
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    async def close(self) -> None:
        """Close the client."""
        await self.http.aclose()

    def _keep(self, response: httpx.Response) -> None:
        for header in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(header)
            cookie: SimpleCookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with the cookies held."""
        headers = dict(kwargs.pop("headers", {}))
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.request(method, url, headers=headers, **kwargs)
        self._keep(response)
        return response

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET with the session."""
        return await self.request("GET", url, **kwargs)

    async def post(self, url: str, data: dict[str, Any], **kwargs: Any) -> httpx.Response:
        """POST a form with the session."""
        return await self.request("POST", url, data=data, **kwargs)

    async def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        """Fill in the sign-in form; returns the answer to the POST."""
        form = await self.get("/console/sign-in")
        pre = _PRE.search(form.text)
        assert pre and self.cookies.get(PRE_COOKIE) == pre[1]
        return await self.post(
            "/console/sign-in",
            {"username": username, "password": password, "pre_token": pre[1], "next": "/console"},
        )

    @property
    def signed_in(self) -> bool:
        """Whether a session cookie is held."""
        return sessions.COOKIE in self.cookies

    async def csrf(self, page: str = "/console/search") -> str:
        """The session's CSRF token, read from a page."""
        return csrf_of((await self.get(page)).text)

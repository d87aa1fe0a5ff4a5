"""Fetching a platform's media (channels/base/media.py) against a real HTTP server on
loopback: only the platform's hosts, the token sent, server errors retried, a redirect never
followed, the size limit held while streaming."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from channels.base.media import MediaFetcher, MediaRefused, MediaUnavailable, allowed
from services.stack.ports import free_port


def test_only_the_platforms_hosts_over_https() -> None:
    hosts = ["fbcdn.net", "graph.facebook.com"]
    assert allowed("https://scontent.xx.fbcdn.net/v/t1/photo.jpg", hosts)
    assert allowed("https://graph.facebook.com/v21.0/123", hosts)
    for url in (
        "http://scontent.xx.fbcdn.net/photo.jpg",  # not https
        "https://evilfbcdn.net/photo.jpg",  # a suffix, not a subdomain
        "https://fbcdn.net.evil.example/photo.jpg",
        "https://user:pw@graph.facebook.com/x",
        "https://169.254.169.254/latest/meta-data",
        "file:///etc/passwd",
    ):
        assert not allowed(url, hosts), url


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, dict[str, int]]]:
    calls: dict[str, int] = {}

    async def photo(request: web.Request) -> web.Response:
        calls["photo"] = calls.get("photo", 0) + 1
        if request.headers.get("authorization") != "Bearer t0ken":
            return web.Response(status=401)
        return web.Response(body=b"\x89PNG...", content_type="image/png")

    async def flaky(request: web.Request) -> web.Response:
        calls["flaky"] = calls.get("flaky", 0) + 1
        if calls["flaky"] < 3:
            return web.Response(status=503)
        return web.Response(body=b"%PDF-1.4", content_type="application/pdf")

    async def down(request: web.Request) -> web.Response:
        calls["down"] = calls.get("down", 0) + 1
        return web.Response(status=500)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data")

    async def huge(request: web.Request) -> web.StreamResponse:
        answer = web.StreamResponse()  # no Content-Length: the limit holds while streaming
        await answer.prepare(request)
        for _ in range(64):
            await answer.write(b"0" * 1024)
        return answer

    app = web.Application()
    for name, handler in (("photo", photo), ("flaky", flaky), ("down", down), ("moved", moved)):
        app.router.add_get(f"/{name}", handler)
    app.router.add_get("/huge", huge)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", calls
    await runner.cleanup()


async def test_fetches_retries_and_refuses(server: tuple[str, dict[str, int]]) -> None:
    base, calls = server
    fetcher = MediaFetcher(["127.0.0.1"], max_bytes=16 * 1024, schemes=("http",), backoff=0.01)
    try:
        got = await fetcher.fetch(f"{base}/photo", {"authorization": "Bearer t0ken"})
        assert (got.data, got.content_type) == (b"\x89PNG...", "image/png")
        assert (await fetcher.fetch(f"{base}/flaky")).data == b"%PDF-1.4"
        assert calls["flaky"] == 3  # two server errors, then the file
        with pytest.raises(MediaUnavailable):
            await fetcher.fetch(f"{base}/down")
        assert calls["down"] == 3
        with pytest.raises(MediaUnavailable):  # a redirect is not followed
            await fetcher.fetch(f"{base}/moved")
        with pytest.raises(MediaRefused):
            await fetcher.fetch(f"{base}/huge")
        with pytest.raises(MediaRefused):
            await fetcher.fetch(f"http://localhost:{base.rsplit(':', 1)[1]}/photo")
    finally:
        await fetcher.close()

"""Email on the console: the new part with the history folded, the HTML as sent (sanitised,
remote images blocked until asked, cid: images from the store), attachments as downloads to
signed-in agents only, and the warning on a sender that failed DMARC."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg
import httpx
import pytest

from channels.base import BlobMissing, FileBlobStore
from channels.email import EmailAdapter
from services.api.auth import Role
from tests.channels.email.support import corpus, message_id
from tests.console_support import ConsoleHttp, make_user
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors")


@pytest.fixture
async def agent(api_url: str, pool: asyncpg.Pool) -> AsyncIterator[ConsoleHttp]:
    """A signed-in agent."""
    user = await make_user(pool, "agent", ["after_sales"])
    client = ConsoleHttp(api_url)
    await client.sign_in(user.username)
    yield client
    await client.close()


def html_mail(sender: str) -> tuple[bytes, str]:
    """A reply in HTML with an inline image, a remote tracking pixel, a script, an SVG file."""
    msg = EmailMessage()
    msg["From"] = f"Jane Doe <{sender}>"
    msg["To"] = "support@acme.example"
    msg["Cc"] = "colleague@example.org"
    msg["Subject"] = "Re: Router"
    mid = message_id("html")
    msg["Message-ID"] = f"<{mid}>"
    msg.set_content("It works now.\n\nOn Tue, 3 Mar 2026, Acme Support wrote:\n> restart it\n")
    msg.add_alternative(
        "<p>It works <b>now</b>.</p><img src='cid:logo@x'>"
        "<img src='https://tracker.example/pixel.gif'><script>alert(1)</script>",
        subtype="html",
    )
    html = msg.get_payload()[1]
    html.add_related(b"\x89PNG fake image bytes", "image", "png", cid="<logo@x>")
    msg.add_attachment(
        b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        maintype="image",
        subtype="svg+xml",
        filename="drawing.svg",
    )
    return msg.as_bytes(), mid


async def send(adapter: EmailAdapter, raw: bytes, sender: str) -> None:
    await aiosmtplib.send(
        raw,
        sender=sender,
        recipients=["support@acme.example"],
        hostname="127.0.0.1",
        port=adapter.smtp.port,
    )


async def row_of(pool: asyncpg.Pool, mid: str) -> Any:
    async def find() -> Any:
        return await pool.fetchrow(
            "SELECT event_id, customer_id FROM timeline WHERE provider_message_id = $1", mid
        )

    return await eventually(find, timeout=60)


async def test_an_html_mail_on_the_console(
    adapter: EmailAdapter, agent: ConsoleHttp, api_url: str, pool: asyncpg.Pool
) -> None:
    sender = f"{unique('html')}@example.org"
    raw, mid = html_mail(sender)
    await send(adapter, raw, sender)
    row = await row_of(pool, mid)
    page = await agent.get(f"/console/customers/{row['customer_id']}")
    assert page.status_code == 200
    assert "It works now." in page.text and "Quoted history" in page.text
    assert "Jane Doe" in page.text and "colleague@example.org" in page.text
    event = row["event_id"]
    assert f"/console/messages/{event}/html" in page.text

    shown = await agent.get(f"/console/messages/{event}/html")
    assert shown.status_code == 200
    assert "<b>now</b>" in shown.text
    assert "<script" not in shown.text and "tracker.example" not in shown.text
    assert f"/console/messages/{event}/files/" in shown.text  # the cid: image, from the store
    assert "sandbox" in shown.headers["content-security-policy"]
    assert "https:" not in shown.headers["content-security-policy"]
    asked = await agent.get(f"/console/messages/{event}/html?images=1")
    assert "tracker.example" in asked.text and "https:" in asked.headers["content-security-policy"]

    found = re.search(rf'href="(/console/messages/{event}/files/\d+)"[^>]*>drawing\.svg', page.text)
    assert found, "the SVG file is listed with a link"
    svg_link = found[1]
    download = await agent.get(svg_link)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/svg+xml"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert b"<svg" in download.content

    outsider = ConsoleHttp(api_url)
    try:
        refused = await outsider.get(svg_link)
        assert refused.status_code in (303, 401)
    finally:
        await outsider.close()
    assert (await agent.get(f"/console/messages/{uuid.uuid4()}/files/1")).status_code == 404
    assert (await agent.get(f"/console/messages/{event}/files/99")).status_code == 404


async def test_a_sender_failing_dmarc_is_shown_with_a_warning(
    adapter: EmailAdapter, agent: ConsoleHttp, pool: asyncpg.Pool
) -> None:
    raw, mid = corpus("dmarc_fail.eml")
    await send(adapter, raw, "security@bank.example")
    row = await row_of(pool, mid)
    page = await agent.get(f"/console/customers/{row['customer_id']}")
    assert "DMARC failed" in page.text and 'role="alert"' in page.text


async def test_erasing_the_customer_deletes_the_files_their_mail_brought(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, data_dir: Path, tokens: Any
) -> None:
    sender = f"{unique('erase')}@example.org"
    raw, mid = html_mail(sender)
    await send(adapter, raw, sender)
    row = await row_of(pool, mid)
    store = FileBlobStore(data_dir / "blobs")
    event = row["event_id"]
    assert await store.get(f"{event}/0")  # the HTML
    headers = {"authorization": f"Bearer {tokens[Role.ADMIN]}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=30) as admin:
        answer = await admin.request(
            "DELETE", f"/v1/customers/{row['customer_id']}", json={"reason": "erasure request"}
        )
        assert answer.status_code == 200, answer.text
    for index in range(4):
        with pytest.raises(BlobMissing):
            await store.get(f"{event}/{index}")


async def test_the_api_serves_a_customers_files_to_a_reader_only(
    adapter: EmailAdapter, api_url: str, pool: asyncpg.Pool, tokens: Any
) -> None:
    sender = f"{unique('api')}@example.org"
    raw, mid = html_mail(sender)
    await send(adapter, raw, sender)
    row = await row_of(pool, mid)
    event, customer = row["event_id"], row["customer_id"]
    interaction = await pool.fetchval("SELECT interaction FROM timeline WHERE event_id = $1", event)
    interaction = json.loads(interaction) if isinstance(interaction, str) else interaction
    svg = next(a for a in interaction["attachments"] if a["name"] == "drawing.svg")
    index = svg["blob"].split("/")[1]
    url = f"/v1/customers/{customer}/interactions/{event}/files/{index}"
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        assert (await http.get(url)).status_code == 401
        reader = {"authorization": f"Bearer {tokens[Role.AGENT]}"}
        answer = await http.get(url, headers=reader)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert b"<svg" in answer.content
        other = f"/v1/customers/{uuid.uuid4()}/interactions/{event}/files/{index}"
        assert (await http.get(other, headers=reader)).status_code == 404

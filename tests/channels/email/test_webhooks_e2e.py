"""The mail services' webhooks through the real `omnihub run api`: a signed Mailgun post and
a Postmark post are published and reach the timeline once; a forged post is refused."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

import asyncpg
import httpx
import pytest

from tests.channels.email.support import MAILGUN_KEY
from tests.channels.email.test_webhooks import (
    basic,
    mailgun_sample,
    mailgun_signature,
    postmark_sample,
)
from tests.support import eventually, unique

pytestmark = pytest.mark.usefixtures("processors")


def mailgun_form(mid: str, sender: str, key: str = MAILGUN_KEY) -> bytes:
    form = dict(parse_qsl(mailgun_sample().decode(), keep_blank_values=True))
    form.update({"Message-Id": f"<{mid}>", "sender": sender, "from": f"Jane <{sender}>"})
    headers = [["Subject", form["subject"]], ["Message-Id", f"<{mid}>"], ["From", form["from"]]]
    form["message-headers"] = json.dumps(headers)
    form.update(mailgun_signature(int(time.time()), uuid.uuid4().hex * 2, key))
    return urlencode(form).encode()


async def on_timeline(pool: asyncpg.Pool, mid: str) -> list[Any]:
    async def rows() -> list[Any]:
        return await pool.fetch(
            "SELECT event_id, subject, body FROM timeline WHERE provider_message_id = $1", mid
        )

    return await eventually(rows, timeout=60)


async def test_mailgun_and_postmark_posts_reach_the_timeline(
    api_url: str, pool: asyncpg.Pool
) -> None:
    mid, sender = f"{unique('mg')}@mail.example.org", f"{unique('mg')}@example.org"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        forged = await http.post(
            "/channels/email/mailgun", content=mailgun_form(mid, sender, "key-x"), headers=form
        )
        assert forged.status_code == 403
        answer = await http.post(
            "/channels/email/mailgun", content=mailgun_form(mid, sender), headers=form
        )
        assert answer.status_code == 200, answer.text
        [row] = await on_timeline(pool, mid)
        assert row["subject"] == "Re: Router keeps dropping"
        assert row["body"].startswith("Thanks, that fixed it!")

        postmark = postmark_sample()
        pm_mid = f"{unique('pm')}@mail.example.org"
        postmark["Headers"] = [{"Name": "Message-ID", "Value": f"<{pm_mid}>"}]
        posted = await http.post(
            "/channels/email/postmark",
            json=postmark,
            headers={"Authorization": basic("postmark", "s3cret pass")},
        )
        assert posted.status_code == 200, posted.text
        [pm_row] = await on_timeline(pool, pm_mid)
        assert pm_row["subject"] == "Test subject"
    assert len(await on_timeline(pool, mid)) == 1

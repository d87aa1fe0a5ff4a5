"""Which Reply-To an inbound message passes on to the reply (``attributes["reply_to"]``): the
sender's, unless the From failed DMARC (a forger's Reply-To would get the agent's answer) or
it names one of our own inboxes."""

from __future__ import annotations

from pathlib import Path

from channels.email.intake import MailIntake
from channels.email.normalise import Envelope
from channels.email.threads import ThreadSigner
from tests.channels.email.support import KEY, corpus, mail, settings


def reply_to_of(raw: bytes, tmp_path: Path) -> object:
    intake = MailIntake(settings(tmp_path), ThreadSigner(KEY.encode(), "acme.example"))
    [event] = intake.prepare(raw, Envelope("smtp")).events
    return event.attributes.get("reply_to")  # type: ignore[union-attr]


def test_the_senders_reply_to_is_passed_on(tmp_path: Path) -> None:
    raw, _ = mail("forms@shop.example", Reply_To="Jane <jane@example.org>")
    assert reply_to_of(raw, tmp_path) == "jane@example.org"
    plain, _ = mail("jane@example.org")
    assert reply_to_of(plain, tmp_path) is None


def test_not_when_the_from_failed_dmarc_nor_to_our_own_inbox(tmp_path: Path) -> None:
    forged, _ = corpus("dmarc_fail.eml")
    forged = forged.replace(b"\nSubject:", b"\nReply-To: thief@evil.example\nSubject:", 1)
    assert b"thief@evil.example" in forged
    assert reply_to_of(forged, tmp_path) is None
    ours, _ = mail("jane@example.org", Reply_To="billing@acme.example")
    assert reply_to_of(ours, tmp_path) is None

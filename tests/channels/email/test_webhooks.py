"""The inbound mail webhooks (channels/email/webhooks.py): Mailgun, Postmark and SendGrid
requests are accepted only when authentic, fresh and new, and every one of them ends in raw
RFC 5322 bytes that ``mime.parse`` reads as the mail that was sent; one mail arriving as
Mailgun ``body-mime``, SendGrid ``email`` and Postmark ``RawEmail`` has one Message-ID."""

# German mail with en dashes is the point here, not a confusable typo.
# ruff: noqa: RUF001

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError

from channels.base import (
    InboundRequest,
    ParseError,
    PayloadTooLarge,
    SignatureError,
    UnsupportedMediaType,
)
from channels.email.mime import ParsedEmail, parse
from channels.email.webhook_config import InboundWebhookSettings
from channels.email.webhook_mail import ReplayGuard
from channels.email.webhooks import (
    WEBHOOKS,
    raw_mailgun,
    raw_postmark,
    raw_sendgrid,
    verify_mailgun,
    verify_postmark,
    verify_sendgrid,
    webhook_routes,
)

HERE = Path(__file__).parent
SAMPLES = HERE / "samples"
CORPUS = HERE / "corpus"
MAILGUN_KEY = "key-test-0123456789abcdef"
#: The timestamp the Mailgun sample was signed at.
SAMPLE_TS = 1772533211
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "----omnihubTestBoundary7MA4YWxkTrZu0gW"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
#: Bytes a careless multipart reader or writer loses: CR LF inside, boundary-like lines (a
#: form boundary's prefix, a rebuilt message's), 8-bit, NUL, a trailing line end.
PDF = (
    b"%PDF-1.4\r\n%\xe2\xe3\xcf\xd3\r\n--" + BOUNDARY[:-4].encode() + b"\r\n"
    b"--=_omnihub_0_0\r\n\x00binary\r\n"
)


def settings(**values: str) -> InboundWebhookSettings:
    return InboundWebhookSettings.model_validate(values)


MAILGUN = settings(MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY)
POSTMARK = settings(POSTMARK_INBOUND_USER="postmark", POSTMARK_INBOUND_PASSWORD="s3cret pass")
SENDGRID = settings(SENDGRID_INBOUND_USER="sendgrid", SENDGRID_INBOUND_PASSWORD="parse-pw")


def request(body: bytes, content_type: str | None, **headers: str) -> InboundRequest:
    all_headers = {k.replace("_", "-"): v for k, v in headers.items()}
    if content_type is not None:
        all_headers["Content-Type"] = content_type
    return InboundRequest("POST", "https://hub.example/channels/email/x", all_headers, body)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def multipart(
    fields: Sequence[tuple[str, bytes | str]],
    files: Sequence[tuple[str, str, str, bytes]] = (),
) -> tuple[bytes, str]:
    """A multipart/form-data body (RFC 7578) and its Content-Type, as a provider sends it."""
    out = b""
    for name, value in fields:
        data = value.encode() if isinstance(value, str) else value
        out += f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        out += data + b"\r\n"
    for name, filename, kind, data in files:
        out += (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'
        ).encode()
        out += data + b"\r\n"
    out += f"--{BOUNDARY}--\r\n".encode()
    return out, f"multipart/form-data; boundary={BOUNDARY}"


def mailgun_signature(timestamp: int, token: str, key: str = MAILGUN_KEY) -> list[tuple[str, str]]:
    digest = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return [("timestamp", str(timestamp)), ("token", token), ("signature", digest)]


def mailgun_sample() -> bytes:
    lines = (SAMPLES / "mailgun_route_forward.form.txt").read_bytes().splitlines()
    return [line for line in lines if line and not line.startswith(b"#")][-1]


def read(raw: bytes) -> ParsedEmail:
    return parse(raw)


# --- Mailgun --------------------------------------------------------------------------------


def test_the_mailgun_sample_verifies_and_reads_as_the_reply_it_is() -> None:
    req = request(mailgun_sample(), FORM)
    verify_mailgun(req, MAILGUN, now=SAMPLE_TS + 30, seen=ReplayGuard())
    mail = read(raw_mailgun(req))
    assert mail.message_id == "CAF=abc123XyZ+Q@mail.example.org"
    assert mail.from_address == "jane.doe@example.org"
    assert mail.from_name == "Jane Doe"
    assert mail.subject == "Re: Router keeps dropping"
    assert mail.in_reply_to == "179541933700.5335.198697599917882718.conv-42@acme.example"
    assert mail.references == ("179541933700.5335.198697599917882718.conv-42@acme.example",)
    assert mail.to == ("support@acme.example",)  # the envelope recipient stands in for To
    assert mail.text.replace("\r\n", "\n").startswith("Thanks, that fixed it!\n\nOn Tue")
    assert mail.new_part()[0].strip() == "Thanks, that fixed it!"
    assert mail.attachments == ()


def test_the_mailgun_sample_and_the_same_mail_by_smtp_deduplicate() -> None:
    smtp = parse((CORPUS / "inbound_reply_with_attachment.eml").read_bytes())
    assert read(raw_mailgun(request(mailgun_sample(), FORM))).message_id == smtp.message_id


def mailgun_multipart(token: str, timestamp: int = SAMPLE_TS) -> tuple[bytes, str]:
    headers = [
        ["Received", "from mail.example.org by mxa.mailgun.org; Tue, 3 Mar 2026 10:20:11 +0000"],
        ["Mime-Version", "1.0"],
        ["From", "Jürgen Doe <jane.doe@example.org>"],
        ["To", "Acme Support <support+conv-42@acme.example>"],
        ["Subject", "Re: Router – ticket #4711"],
        ["Message-Id", "<mg-multi-1@mail.example.org>"],
        ["In-Reply-To", "<179541933700.conv-42@acme.example>"],
        ["References", "<a@acme.example> <179541933700.conv-42@acme.example>"],
        ["Content-Type", 'multipart/mixed; boundary="000000000000abc"'],
    ]
    fields: list[tuple[str, bytes | str]] = [
        ("recipient", "support+conv-42@acme.example"),
        ("sender", "jane.doe@example.org"),
        ("from", "Jürgen Doe <jane.doe@example.org>"),
        ("subject", "Re: Router – ticket #4711"),
        ("body-plain", "Danke, geht wieder.\r\nScreenshot und Rechnung anbei.\r\n"),
        ("body-html", '<p>Danke, geht wieder.</p><img src="cid:shot1@example.org">'),
        ("message-headers", json.dumps(headers)),
        ("attachment-count", "2"),
        ("content-id-map", json.dumps({"<shot1@example.org>": "attachment-2"})),
        *mailgun_signature(timestamp, token),
    ]
    files = [
        ("attachment-1", "Rechnung März.pdf", "application/pdf", PDF),
        ("attachment-2", "shot.png", "image/png", PNG),
    ]
    return multipart(fields, files)


def test_a_mailgun_multipart_post_keeps_headers_bodies_and_attachment_bytes() -> None:
    body, content_type = mailgun_multipart("t" * 50)
    req = request(body, content_type)
    verify_mailgun(req, MAILGUN, now=SAMPLE_TS, seen=ReplayGuard())
    mail = read(raw_mailgun(req))
    assert mail.message_id == "mg-multi-1@mail.example.org"
    assert mail.in_reply_to == "179541933700.conv-42@acme.example"
    assert mail.references == ("a@acme.example", "179541933700.conv-42@acme.example")
    assert (mail.from_name, mail.from_address) == ("Jürgen Doe", "jane.doe@example.org")
    assert mail.to == ("support+conv-42@acme.example",)
    assert mail.subject == "Re: Router – ticket #4711"
    assert (
        mail.text.replace("\r\n", "\n") == "Danke, geht wieder.\nScreenshot und Rechnung anbei.\n"
    )
    assert mail.html is not None and "cid:shot1@example.org" in mail.html
    files = {a.filename: a for a in mail.attachments}
    assert set(files) == {"Rechnung März.pdf", "shot.png"}
    assert files["Rechnung März.pdf"].data == PDF
    assert files["Rechnung März.pdf"].content_type == "application/pdf"
    assert not files["Rechnung März.pdf"].inline
    assert files["shot.png"].data == PNG
    assert (files["shot.png"].content_id, files["shot.png"].inline) == ("shot1@example.org", True)


def test_a_forwarded_message_attached_to_a_mailgun_post_is_parsed_as_one() -> None:
    inner = b"From: bob@example.net\r\nSubject: Original order\r\nMessage-ID: <o@x>\r\n\r\nHi\r\n"
    body, content_type = multipart(
        [
            ("from", "jane.doe@example.org"),
            ("subject", "Fwd: Original order"),
            ("body-plain", "See below."),
            ("attachment-count", "1"),
            *mailgun_signature(SAMPLE_TS, "f" * 50),
        ],
        [("attachment-1", "order.eml", "message/rfc822", inner)],
    )
    mail = read(raw_mailgun(request(body, content_type)))
    assert [f.subject for f in mail.forwarded] == ["Original order"]
    assert mail.attachments[0].filename == "order.eml"


EIGHT_BIT = (
    b"Received: from x by y; Tue, 3 Mar 2026 10:20:11 +0000\r\n"
    b"From: =?ISO-8859-1?Q?J=FCrgen?= <jane.doe@example.org>\r\n"
    b"Subject: Gr\xc3\xbc\xc3\x9fe\r\nMessage-ID: <eight-bit@example.org>\r\n"
    b"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: 8bit\r\n"
    b"\r\nF\xfcr Sie: 100 \xa4 & 50%\r\n"
)


@pytest.mark.parametrize("shape", ["form", "multipart"])
def test_mailgun_body_mime_is_handed_on_byte_for_byte(shape: str) -> None:
    fields: list[tuple[str, bytes | str]] = [
        ("recipient", "support@acme.example"),
        ("body-mime", EIGHT_BIT),
        *mailgun_signature(SAMPLE_TS, "m" * 50),
    ]
    if shape == "form":
        req = request(urlencode(fields).encode(), FORM)
    else:
        req = request(*multipart(fields))
    verify_mailgun(req, MAILGUN, now=SAMPLE_TS, seen=ReplayGuard())
    assert raw_mailgun(req) == EIGHT_BIT
    assert read(raw_mailgun(req)).text.startswith("Für Sie: 100 ¤ & 50%")


def test_forged_mailgun_requests_are_refused() -> None:
    sample = mailgun_sample()
    fields = dict(mailgun_signature(SAMPLE_TS, "a" * 50))
    other = dict(mailgun_signature(SAMPLE_TS, "b" * 50))
    wrong_key = dict(mailgun_signature(SAMPLE_TS, "a" * 50, key="key-other"))
    forged = {
        "no signature": {"from": "x@example.org", "body-plain": "hi"},
        "no token": {k: v for k, v in fields.items() if k != "token"},
        "signature of another token": {**fields, "signature": other["signature"]},
        "signature of another timestamp": {
            **fields,
            "timestamp": str(SAMPLE_TS + 1),
        },
        "wrong key": wrong_key,
        "not hex": {**fields, "signature": "zz" * 32},
        "non-ASCII signature": {**fields, "signature": "é" * 64},
    }
    for values in forged.values():
        with pytest.raises(SignatureError):
            verify_mailgun(
                request(urlencode(values).encode(), FORM),
                MAILGUN,
                now=SAMPLE_TS,
                seen=ReplayGuard(),
            )
    tampered = sample.replace(b"token=5f1c", b"token=6f1c")
    with pytest.raises(SignatureError, match="does not match"):
        verify_mailgun(request(tampered, FORM), MAILGUN, now=SAMPLE_TS, seen=ReplayGuard())


def test_stale_future_and_replayed_mailgun_requests_are_refused() -> None:
    req = request(mailgun_sample(), FORM)
    for now in (SAMPLE_TS + 301, SAMPLE_TS - 301):
        with pytest.raises(SignatureError, match="more than 300 s"):
            verify_mailgun(req, MAILGUN, now=now, seen=ReplayGuard())
    strict = settings(MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY, MAILGUN_MAX_AGE_SECONDS="10")
    with pytest.raises(SignatureError):
        verify_mailgun(req, strict, now=SAMPLE_TS + 11, seen=ReplayGuard())
    guard = ReplayGuard()
    verify_mailgun(req, MAILGUN, now=SAMPLE_TS + 300, seen=guard)
    with pytest.raises(SignatureError, match="replayed"):
        verify_mailgun(req, MAILGUN, now=SAMPLE_TS + 301 - 1, seen=guard)
    # a forged request with a fresh token never enters the guard
    forged = urlencode({**dict(mailgun_signature(SAMPLE_TS, "c" * 50)), "signature": "0" * 64})
    with pytest.raises(SignatureError):
        verify_mailgun(request(forged.encode(), FORM), MAILGUN, now=SAMPLE_TS, seen=guard)
    assert len(guard) == 1


def test_the_default_replay_guard_refuses_a_second_delivery() -> None:
    body = urlencode(mailgun_signature(SAMPLE_TS, "d" * 50)).encode()
    verify_mailgun(request(body, FORM), MAILGUN, now=SAMPLE_TS)
    with pytest.raises(SignatureError, match="replayed"):
        verify_mailgun(request(body, FORM), MAILGUN, now=SAMPLE_TS)


def test_an_unconfigured_mailgun_refuses_even_a_valid_request() -> None:
    for empty in (settings(), settings(MAILGUN_WEBHOOK_SIGNING_KEY="")):
        with pytest.raises(SignatureError, match="MAILGUN_WEBHOOK_SIGNING_KEY"):
            verify_mailgun(request(mailgun_sample(), FORM), empty, now=SAMPLE_TS)


def test_mailgun_refuses_other_media_types_and_oversized_bodies() -> None:
    signature = dict(mailgun_signature(SAMPLE_TS, "e" * 50))
    as_json = request(json.dumps({"signature": signature}).encode(), "application/json")
    with pytest.raises(UnsupportedMediaType):
        verify_mailgun(as_json, MAILGUN, now=SAMPLE_TS, seen=ReplayGuard())
    with pytest.raises(UnsupportedMediaType):
        raw_mailgun(as_json)
    with pytest.raises(UnsupportedMediaType):
        raw_mailgun(request(mailgun_sample(), None))
    small = settings(MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY, EMAIL_WEBHOOK_MAX_BYTES="1024")
    big = request(mailgun_sample() + b"&pad=" + b"x" * 1024, FORM)
    with pytest.raises(PayloadTooLarge):
        verify_mailgun(big, small, now=SAMPLE_TS, seen=ReplayGuard())


def test_an_authentic_but_unreadable_mailgun_request_says_why() -> None:
    signed = mailgun_signature(SAMPLE_TS, "u" * 50)
    cases = {
        "no message": (urlencode(signed).encode(), FORM),
        "is not JSON": (urlencode([*signed, ("message-headers", "[[not json")]).encode(), FORM),
        "pair": (urlencode([*signed, ("message-headers", '[["From"]]')]).encode(), FORM),
        "attachment-count is 2": (
            urlencode([*signed, ("from", "a@example.org"), ("attachment-count", "2")]).encode(),
            FORM,
        ),
        "truncated": (multipart([*signed, ("from", "a@b.example")])[0][:-12], multipart([])[1]),
        "boundary": (b"--x\r\n\r\n", "multipart/form-data"),
    }
    for reason, (body, content_type) in cases.items():
        with pytest.raises(ParseError, match=reason) as caught:
            raw_mailgun(request(body, content_type))
        assert not isinstance(caught.value, UnsupportedMediaType)
    # a body whose signature cannot even be read is refused, not passed on
    with pytest.raises(SignatureError):
        verify_mailgun(request(b"--x\r\n\r\n", "multipart/form-data"), MAILGUN, now=SAMPLE_TS)


# --- Postmark -------------------------------------------------------------------------------


def postmark_request(payload: dict[str, object] | bytes, auth: str | None = None) -> InboundRequest:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {"Authorization": auth or basic("postmark", "s3cret pass")}
    return request(body, "application/json", **headers)


def postmark_sample() -> dict[str, object]:
    data = json.loads((SAMPLES / "postmark_inbound.json").read_bytes())
    assert isinstance(data, dict)
    return data


def test_the_postmark_sample_verifies_and_reads_as_sent() -> None:
    req = postmark_request((SAMPLES / "postmark_inbound.json").read_bytes())
    verify_postmark(req, POSTMARK)
    mail = read(raw_postmark(req))
    # no Message-ID among its Headers: Postmark's MessageID stands in (documented)
    assert mail.message_id == "73e6d360-66eb-11e1-8e72-a8904824019b@postmark"
    assert (mail.from_name, mail.from_address) == ("Postmarkapp Support", "support@postmarkapp.com")
    assert mail.to == ("yourhash+samplehash@inbound.postmarkapp.com",)
    assert mail.cc == ("firstcc@postmarkapp.com", "secondcc@postmarkapp.com")
    assert mail.reply_to == "replyto@postmarkapp.com"
    assert mail.subject == "Test subject"
    assert mail.date is not None and mail.date.isoformat() == "2014-08-01T16:45:32-04:00"
    assert mail.text.strip() == "This is a test text body."
    assert mail.html is not None
    assert mail.html.rstrip() == "<html><body><p>This is a test html body.</p></body></html>"
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        ("test.txt", "text/plain", b"This is attachment contents, base-64 encoded.")
    ]


def test_postmark_keeps_the_original_message_id_and_thread_headers() -> None:
    data = postmark_sample()
    data["Headers"] = [
        {"Name": "Message-ID", "Value": "<CAF=orig@mail.example.org>"},
        {"Name": "In-Reply-To", "Value": "<conv-42@acme.example>"},
        {"Name": "References", "Value": "<conv-41@acme.example> <conv-42@acme.example>"},
        {"Name": "MIME-Version", "Value": "1.0"},
    ]
    data["Attachments"] = [
        {
            "Name": "logo.png",
            "Content": base64.b64encode(PNG).decode(),
            "ContentType": "image/png",
            "ContentID": "logo@01D",
            "ContentLength": len(PNG),
        },
        {
            "Name": "doc.pdf",
            "Content": base64.encodebytes(PDF).decode(),
            "ContentType": "application/pdf",
        },
    ]
    mail = read(raw_postmark(postmark_request(data)))
    assert mail.message_id == "CAF=orig@mail.example.org"
    assert mail.in_reply_to == "conv-42@acme.example"
    assert mail.references == ("conv-41@acme.example", "conv-42@acme.example")
    files = {a.filename: a for a in mail.attachments}
    assert files["logo.png"].data == PNG
    assert (files["logo.png"].content_id, files["logo.png"].inline) == ("logo@01D", True)
    assert files["doc.pdf"].data == PDF


def test_postmark_raw_email_is_handed_on_as_it_is() -> None:
    raw = (CORPUS / "inbound_reply_with_attachment.eml").read_bytes()
    data = {**postmark_sample(), "RawEmail": raw.decode("ascii")}
    assert raw_postmark(postmark_request(data)) == raw


def test_wrong_or_missing_postmark_credentials_are_refused() -> None:
    body = (SAMPLES / "postmark_inbound.json").read_bytes()
    for auth in (
        basic("postmark", "wrong"),
        basic("other", "s3cret pass"),
        basic("postmark", "s3cret pass!"),
        "Basic " + base64.b64encode(b"postmarks3cret pass").decode(),
        "Bearer s3cret pass",
        "Basic not*base64",
        "Basic ",
    ):
        with pytest.raises(SignatureError):
            verify_postmark(postmark_request(body, auth), POSTMARK)
    with pytest.raises(SignatureError, match="no Authorization"):
        verify_postmark(request(body, "application/json"), POSTMARK)
    for unconfigured in (settings(), settings(POSTMARK_INBOUND_USER="postmark")):
        with pytest.raises(SignatureError, match="POSTMARK_INBOUND"):
            verify_postmark(postmark_request(body), unconfigured)


def test_postmark_refuses_other_media_types() -> None:
    req = request(b"From=x", FORM, Authorization=basic("postmark", "s3cret pass"))
    with pytest.raises(UnsupportedMediaType):
        verify_postmark(req, POSTMARK)
    with pytest.raises(UnsupportedMediaType):
        raw_postmark(req)


def test_an_authentic_but_unreadable_postmark_request_says_why() -> None:
    bad_attachment = {**postmark_sample(), "Attachments": [{"Name": "x.bin", "Content": "@@@"}]}
    cases: dict[str, dict[str, object] | bytes] = {
        "not valid base64": bad_attachment,
        "not JSON": b"{not json",
        "not an object": b"[1, 2]",
        "Headers is not a list": {**postmark_sample(), "Headers": {"Name": "X"}},
        "Subject is not a string": {**postmark_sample(), "Subject": 42},
        "no message": {"MessageStream": "inbound"},
    }
    for reason, payload in cases.items():
        with pytest.raises(ParseError, match=reason):
            raw_postmark(postmark_request(payload))


# --- SendGrid -------------------------------------------------------------------------------


SENDGRID_HEADERS = (
    "Received: by mx0047p1mdw1.sendgrid.net with SMTP id 6WCVv7KAWn\r\n"
    "\tTue, 03 Mar 2026 10:20:11 +0000 (UTC)\r\n"
    "MIME-Version: 1.0\r\n"
    "From: =?UTF-8?Q?J=C3=BCrgen_Doe?= <jane.doe@example.org>\r\n"
    "To: Acme Support <support+conv-42@acme.example>\r\n"
    "Subject: Grüße – Rechnung\r\n"
    "Message-ID: <sg-parsed-1@mail.example.org>\r\n"
    "In-Reply-To: <conv-42@acme.example>\r\n"
    "References: <conv-41@acme.example>\r\n <conv-42@acme.example>\r\n"
    'Content-Type: multipart/mixed; boundary="00000000000017a0"\r\n'
).encode()


def sendgrid_parsed() -> tuple[bytes, str]:
    fields: list[tuple[str, bytes | str]] = [
        ("headers", SENDGRID_HEADERS),
        ("dkim", "{@example.org : pass}"),
        ("to", "Acme Support <support+conv-42@acme.example>"),
        ("from", "Jürgen Doe <jane.doe@example.org>"),
        ("text", "Grüße, die Rechnung anbei.\n".encode("iso-8859-1")),
        ("html", "<p>Grüße</p>".encode("iso-8859-1")),
        ("sender_ip", "203.0.113.41"),
        ("envelope", '{"to":["support+conv-42@acme.example"],"from":"jane.doe@example.org"}'),
        ("attachments", "2"),
        ("subject", "Grüße – Rechnung"),
        (
            "charsets",
            '{"to":"UTF-8","html":"iso-8859-1","subject":"UTF-8","from":"UTF-8","text":"iso-8859-1"}',
        ),
        ("SPF", "pass"),
        (
            "attachment-info",
            json.dumps(
                {
                    "attachment1": {
                        "filename": "Rechnung.pdf",
                        "name": "Rechnung.pdf",
                        "type": "application/pdf",
                    },
                    "attachment2": {
                        "filename": "logo.png",
                        "name": "logo.png",
                        "type": "image/png",
                        "content-id": "ii_logo1",
                    },
                }
            ),
        ),
    ]
    files = [
        ("attachment1", "Rechnung.pdf", "application/pdf", PDF),
        ("attachment2", "logo.png", "image/png", PNG),
    ]
    return multipart(fields, files)


def test_a_parsed_sendgrid_post_reads_as_the_mail_sent() -> None:
    body, content_type = sendgrid_parsed()
    req = request(body, content_type, Authorization=basic("sendgrid", "parse-pw"))
    verify_sendgrid(req, SENDGRID)
    raw = raw_sendgrid(req)
    mail = read(raw)
    assert mail.message_id == "sg-parsed-1@mail.example.org"
    assert mail.in_reply_to == "conv-42@acme.example"
    assert mail.references == ("conv-41@acme.example", "conv-42@acme.example")
    assert (mail.from_name, mail.from_address) == ("Jürgen Doe", "jane.doe@example.org")
    assert mail.subject == "Grüße – Rechnung"  # raw UTF-8 in the header block, kept
    assert mail.text.strip() == "Grüße, die Rechnung anbei."  # ISO-8859-1 per charsets
    assert mail.html is not None and mail.html.rstrip() == "<p>Grüße</p>"
    files = {a.filename: a for a in mail.attachments}
    assert files["Rechnung.pdf"].data == PDF
    assert files["logo.png"].data == PNG
    assert (files["logo.png"].content_id, files["logo.png"].inline) == ("ii_logo1", True)
    assert raw.count(b"Content-Type: multipart/mixed") == 1  # the provider's own was dropped
    assert raw_sendgrid(req) == raw  # the same post rebuilds the same bytes


def test_a_rebuilt_mail_without_message_id_keeps_one_key_across_retries() -> None:
    headers = SENDGRID_HEADERS.replace(b"Message-ID: <sg-parsed-1@mail.example.org>\r\n", b"")
    body, content_type = multipart([("headers", headers), ("text", "hello")])
    first = read(raw_sendgrid(request(body, content_type))).message_id
    assert first.startswith("sha256:")
    assert read(raw_sendgrid(request(body, content_type))).message_id == first


def test_sendgrid_raw_email_is_handed_on_byte_for_byte() -> None:
    body, content_type = multipart([("email", EIGHT_BIT), ("to", "support@acme.example")])
    assert raw_sendgrid(request(body, content_type)) == EIGHT_BIT


def test_wrong_or_missing_sendgrid_credentials_are_refused() -> None:
    body, content_type = sendgrid_parsed()
    for auth in (basic("sendgrid", "nope"), basic("x", "parse-pw"), "Bearer abc"):
        with pytest.raises(SignatureError):
            verify_sendgrid(request(body, content_type, Authorization=auth), SENDGRID)
    with pytest.raises(SignatureError):
        verify_sendgrid(request(body, content_type), SENDGRID)
    with pytest.raises(SignatureError, match="SENDGRID_INBOUND"):
        verify_sendgrid(
            request(body, content_type, Authorization=basic("sendgrid", "parse-pw")), settings()
        )


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_key(private: ec.EllipticCurvePrivateKey) -> str:
    """The key as SendGrid returns it for a policy: base64 DER (``MFkw...``)."""
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def signed(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: int) -> dict[str, str]:
    signature = private.sign(str(timestamp).encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": str(timestamp),
    }


def test_the_sendgrid_security_policy_signature_is_checked(
    signing_key: ec.EllipticCurvePrivateKey,
) -> None:
    config = settings(SENDGRID_INBOUND_PUBLIC_KEY=public_key(signing_key))
    assert public_key(signing_key).startswith("MFkw")
    body, content_type = sendgrid_parsed()
    now = 1_780_000_000
    headers = signed(signing_key, body, now)
    req = InboundRequest("POST", "https://h/x", {**headers, "Content-Type": content_type}, body)
    guard = ReplayGuard()
    verify_sendgrid(req, config, now=now + 60, seen=guard)
    assert read(raw_sendgrid(req)).message_id == "sg-parsed-1@mail.example.org"
    with pytest.raises(SignatureError, match="replayed"):
        verify_sendgrid(req, config, now=now + 61, seen=guard)

    def refused(hdrs: dict[str, str], data: bytes = body, at: int = now) -> None:
        forged = InboundRequest("POST", "https://h/x", {**hdrs, "Content-Type": content_type}, data)
        with pytest.raises(SignatureError):
            verify_sendgrid(forged, config, now=at, seen=ReplayGuard())

    other = ec.generate_private_key(ec.SECP256R1())
    refused({})  # no signature
    refused(signed(other, body, now))  # another key
    refused(headers, data=body.replace(b"Gr", b"Hr", 1))  # another body
    refused({**headers, "X-Twilio-Email-Event-Webhook-Timestamp": str(now + 1)})  # other time
    refused({**headers, "X-Twilio-Email-Event-Webhook-Signature": "***"})
    refused(headers, at=now + 301)  # stale
    # both configured: both required
    both = settings(
        SENDGRID_INBOUND_PUBLIC_KEY=public_key(signing_key),
        SENDGRID_INBOUND_USER="sendgrid",
        SENDGRID_INBOUND_PASSWORD="parse-pw",
    )
    with pytest.raises(SignatureError, match="Authorization"):
        verify_sendgrid(req, both, now=now, seen=ReplayGuard())
    authed = InboundRequest(
        "POST",
        "https://h/x",
        {**headers, "Content-Type": content_type, "Authorization": basic("sendgrid", "parse-pw")},
        body,
    )
    verify_sendgrid(authed, both, now=now, seen=ReplayGuard())


def test_a_key_that_is_not_an_ec_public_key_is_refused_at_start() -> None:
    with pytest.raises(ValidationError):
        settings(SENDGRID_INBOUND_PUBLIC_KEY="bm90IGEga2V5")


def test_sendgrid_refuses_other_media_types() -> None:
    req = request(b"email=x", FORM, Authorization=basic("sendgrid", "parse-pw"))
    with pytest.raises(UnsupportedMediaType):
        verify_sendgrid(req, SENDGRID)
    with pytest.raises(UnsupportedMediaType):
        raw_sendgrid(req)


def test_an_authentic_but_unreadable_sendgrid_request_says_why() -> None:
    body, content_type = sendgrid_parsed()
    missing_file = body.replace(b'name="attachment2"', b'name="other"')
    cases = {
        "attachments is 2 but 1": (missing_file, content_type),
        "truncated": (body[: len(body) // 2], content_type),
        "charsets field is not JSON": (multipart([("text", "x"), ("charsets", "{")])),
        "no message": (multipart([("sender_ip", "203.0.113.9")])),
        "without a boundary": (body, "multipart/form-data"),
    }
    for reason, (data, kind) in cases.items():
        with pytest.raises(ParseError, match=reason):
            raw_sendgrid(request(data, kind))


# --- one mail, three ways -------------------------------------------------------------------


def test_the_same_mail_through_each_provider_has_one_message_id() -> None:
    raw = (CORPUS / "inbound_reply_with_attachment.eml").read_bytes()
    mailgun_form = urlencode([("body-mime", raw), *mailgun_signature(SAMPLE_TS, "s" * 50)])
    sendgrid_body, sendgrid_type = multipart([("email", raw), ("charsets", '{"to":"UTF-8"}')])
    postmark_json = {**postmark_sample(), "RawEmail": raw.decode("ascii")}
    ids = {
        "smtp": parse(raw).message_id,
        "mailgun": read(raw_mailgun(request(mailgun_form.encode(), FORM))).message_id,
        "sendgrid": read(raw_sendgrid(request(sendgrid_body, sendgrid_type))).message_id,
        "postmark": read(raw_postmark(postmark_request(postmark_json))).message_id,
    }
    assert set(ids.values()) == {"CAF=abc123XyZ+Q@mail.example.org"}, ids


# --- routes and pieces ----------------------------------------------------------------------


def test_the_routes_post_to_each_provider_with_the_configured_limit() -> None:
    routes = webhook_routes(settings(EMAIL_WEBHOOK_MAX_BYTES="2048"))
    assert {r.path for r in routes} >= {"mailgun", "postmark", "sendgrid"}
    assert {r.path for r in routes} == set(WEBHOOKS)
    assert all(r.methods == ("POST",) and r.max_body_bytes == 2048 for r in routes)
    assert all(r.summary and r.publishes and not r.scopes for r in routes)
    assert webhook_routes()[0].max_body_bytes == 30 * 1024 * 1024
    assert WEBHOOKS["sendgrid"].raw is raw_sendgrid
    assert WEBHOOKS["mailgun/mime"].verify is verify_mailgun


def test_the_replay_guard_is_bounded_and_forgets_what_can_no_longer_be_fresh() -> None:
    guard = ReplayGuard(capacity=3)
    for i in range(10):
        assert guard.first_use(f"t{i}", 1000.0, now=1000.0, max_age=300)
    assert len(guard) == 3
    assert not guard.first_use("t9", 1000.0, now=1000.0, max_age=300)
    assert guard.first_use("new", 2000.0, now=2000.0, max_age=300)
    assert len(guard) == 1  # the others expired at 1300

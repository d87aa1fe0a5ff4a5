"""The email channel's MIME core (channels/email): real-shaped mail parses to the values a
person reads in it, whatever the charset or MIME shape; input that is no message fails only
as UnparseableEmail; replies split from their history in six languages; HTML is made safe."""

# Mail in Russian, with en dashes and the like, is the point here, not a confusable typo.
# ruff: noqa: RUF001

from __future__ import annotations

import dataclasses
import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from channels.email.authresults import authentication
from channels.email.charsets import decode
from channels.email.mime import (
    ParsedEmail,
    UnparseableEmail,
    new_part,
    normalized_subject,
    parse,
    sanitized_html,
)

CORPUS = Path(__file__).parent / "corpus"
#: Corpus files that are not messages at all.
NOT_MESSAGES = {"empty.eml", "garbage.eml"}
PROPERTY = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def load(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def parsed(name: str) -> ParsedEmail:
    return parse(load(name))


def message(headers: str, body: str = "Hello.\n") -> bytes:
    """A small text/plain message with the given extra header lines."""
    base = "From: Jane <jane@example.org>\nTo: support@acme.example\nSubject: Hi\n"
    return (base + headers + "\n" + body).encode()


def texts(value: object) -> list[str]:
    """Every string inside a parsed value (fields, tuples, mappings, nested dataclasses)."""
    if isinstance(value, str):
        return [value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return [s for f in dataclasses.fields(value) for s in texts(getattr(value, f.name))]
    if isinstance(value, dict):
        return [s for pair in value.items() for item in pair for s in texts(item)]
    if isinstance(value, tuple | list):
        return [s for item in value for s in texts(item)]
    return []


def assert_storable(result: ParsedEmail) -> None:
    bad = [s for s in texts(result) if _UNSTORABLE.search(s)]
    assert not bad, f"NUL or lone surrogates the hub cannot store: {bad!r}"


# --- the corpus as a whole ------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda p: p.name)
def test_every_corpus_file_parses_or_is_unparseable(path: Path) -> None:
    try:
        result = parse(path.read_bytes())
    except UnparseableEmail:
        assert path.name in NOT_MESSAGES, f"{path.name} should parse"
        return
    assert path.name not in NOT_MESSAGES, f"{path.name} is no message but parsed"
    assert result.message_id
    assert_storable(result)


def test_the_corpus_readme_names_every_file() -> None:
    readme = (CORPUS / "README.md").read_text()
    missing = [p.name for p in CORPUS.glob("*.eml") if f"`{p.name}`" not in readme]
    assert not missing


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty"),
        (b"\r\n\r\n  \r\n", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "no header"),
        (b"just some text without any header\nsecond line\n", "no header"),
    ],
)
def test_what_cannot_be_a_message_is_unparseable_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(UnparseableEmail, match=reason):
        parse(raw)


# --- the three shared samples --------------------------------------------------------------


def test_a_gmail_reply_with_an_attachment() -> None:
    mail = parsed("inbound_reply_with_attachment.eml")
    assert mail.message_id == "CAF=abc123XyZ+Q@mail.example.org"
    assert mail.in_reply_to == "179541933700.5335.198697599917882718.conv-42@acme.example"
    assert mail.references == ("179541933700.5335.198697599917882718.conv-42@acme.example",)
    assert mail.subject == "Re: Router keeps dropping – ticket #4711"
    assert (mail.from_name, mail.from_address) == ("Jürgen Doe", "jane.doe@example.org")
    assert mail.to == ("support+conv-42@acme.example",)
    assert mail.date == datetime(2026, 3, 3, 10, 20, 5, tzinfo=UTC)
    assert mail.text.startswith("Danke, der Neustart hat geholfen! Leider fällt es abends")
    assert mail.html is not None and 'class="gmail_quote"' in mail.html
    assert mail.new_part() == (
        "Danke, der Neustart hat geholfen! Leider fällt es abends wieder aus.\nScreenshot anbei.",
        "On Tue, 3 Mar 2026 at 11:12, Acme Support <support@acme.example> wrote:\n\n"
        "> Hi Jürgen — please try restarting the router.\n>\n> --\n> Acme Support\n>",
    )
    (image,) = mail.attachments
    assert (image.filename, image.content_type, image.size) == (
        "Bildschirmfoto März.png",
        "image/png",
        70,
    )
    assert (image.content_id, image.inline) == ("f_lm3x1a2b0", False)
    assert image.data.startswith(b"\x89PNG\r\n")
    assert (mail.automatic, mail.bounce, mail.forwarded) == (None, None, ())


def test_an_outlook_out_of_office_reply_is_automatic() -> None:
    mail = parsed("auto_reply_out_of_office.eml")
    assert mail.automatic == "auto-submitted: auto-replied"
    assert mail.subject == "Automatische Antwort: Re: Your ticket #4711"
    assert mail.normalized_subject == "Automatische Antwort: Re: Your ticket #4711"
    assert mail.text.strip() == (
        "Ich bin bis 10.03. nicht im Büro und habe nur eingeschränkten Zugriff auf meine E-Mails."
    )
    assert mail.bounce is None


def test_a_postfix_delivery_status_notification_is_a_hard_bounce() -> None:
    mail = parsed("dsn_bounce.eml")
    assert mail.bounce is not None
    assert mail.bounce.recipients == ("nobody@example.org",)
    assert mail.bounce.status == "5.1.1"
    assert mail.bounce.diagnostic == (
        "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown"
    )
    assert mail.bounce.original_message_id == "179541933799.5335.1.conv-43@acme.example"
    assert (mail.bounce.hard, mail.bounce.action, mail.bounce.standard) == (True, "failed", True)
    assert mail.automatic == "auto-submitted: auto-replied"
    assert mail.from_address == "mailer-daemon@mx.acme.example"
    assert [a.content_type for a in mail.attachments] == [
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert b"Final-Recipient: rfc822; nobody@example.org" in mail.attachments[0].data


# --- MIME shapes ---------------------------------------------------------------------------


def test_multipart_alternative_gives_text_html_addresses_and_authentication() -> None:
    mail = parsed("multipart_alternative.eml")
    assert mail.subject == "Orçamento para 200 licenças"
    assert (mail.from_name, mail.from_address) == (
        "Ana Conceição Silva",
        "ana.silva@example.com.br",
    )
    assert mail.reply_to == "compras@example.com.br"
    assert mail.to == ("sales@acme.example", "billing@acme.example")
    assert mail.cc == ("joao@example.com.br", "maria@example.com.br")
    assert mail.date == datetime(2026, 3, 4, 6, 14, 55, tzinfo=timezone(timedelta(hours=-3)))
    assert mail.text == (
        "Bom dia,\n\ngostaríamos de um orçamento para 200 licenças anuais.\n\nObrigada,\nAna\n"
    )
    assert mail.html is not None and "<b>orçamento</b>" in mail.html
    # two DKIM signatures, one broken: one passing is enough
    assert mail.authentication == {"dkim": "pass", "spf": "pass", "dmarc": "pass"}
    assert not mail.dmarc_failed
    assert (mail.attachments, mail.automatic, mail.bounce) == ((), None, None)


def test_reply_to_equal_to_from_is_not_repeated() -> None:
    mail = parse(message("Reply-To: JANE@example.org\n"))
    assert (mail.from_address, mail.reply_to) == ("jane@example.org", None)


def test_multipart_related_keeps_the_cid_image_without_content_disposition() -> None:
    mail = parsed("multipart_related_cid.eml")
    assert mail.text == "Our new logo is attached inline."
    (logo,) = mail.attachments
    assert (logo.content_type, logo.content_id, logo.inline, logo.filename) == (
        "image/png",
        "logo.png@partner.example",
        True,
        None,
    )
    assert logo.data.startswith(b"\x89PNG")
    assert mail.html is not None
    shown = sanitized_html(mail.html)
    assert '<img src="cid:logo.png@partner.example" alt="logo">' in shown
    assert "tracker.partner.example" not in shown


def test_a_message_with_twenty_attachments_keeps_all_twenty() -> None:
    raw = load("twenty_attachments.eml")
    assert b"\r\n" in raw  # this one travels with SMTP's line ends
    mail = parse(raw)
    assert mail.text == "Twenty files, as promised."
    assert len(mail.attachments) == 20
    kinds = ["application/pdf", "image/png", "text/csv", "application/zip", "image/jpeg"]
    for number, attachment in enumerate(mail.attachments, start=1):
        expected = f"attachment number {number:02d}\n".encode() * number
        assert attachment.filename is not None
        assert attachment.filename.startswith(f"file-{number:02d}.")
        assert attachment.content_type == kinds[(number - 1) % 5]
        assert (attachment.data, attachment.size) == (expected, len(expected))
        assert not attachment.inline


def test_an_html_only_message_gets_text_derived_from_its_html() -> None:
    mail = parsed("html_only.eml")
    assert mail.text == (
        "Hello team,\n\nMy invoice #4711 is wrong.\nCan you check it?\n\n"
        "Item one\nItem two & three\n\nThanks,\nKim"
    )
    assert mail.html is not None and "<script>" in mail.html  # kept as sent; shown sanitised
    shown = sanitized_html(mail.html)
    assert "<script" not in shown and "onerror" not in shown and "tracker.example" not in shown
    assert "<b>wrong</b>" in shown


def test_an_empty_text_alternative_gives_way_to_the_html() -> None:
    raw = message(
        'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\n \n--b\nContent-Type: text/html\n\n"
        "<p>Real&nbsp;content</p>\n--b--\n",
    )
    assert parse(raw).text == "Real content"


def test_a_multipart_without_its_boundary_is_read_as_text() -> None:
    assert parsed("multipart_no_boundary.eml").text == (
        "Text of a multipart whose boundary is missing.\n"
    )


def test_a_forwarded_message_is_an_attachment_and_parsed() -> None:
    mail = parsed("forwarded_rfc822.eml")
    assert mail.text == "Os reenvío la factura que recibí."
    (attached,) = mail.attachments
    assert (attached.content_type, attached.filename) == ("message/rfc822", "Factura 2026-031.eml")
    assert b"Message-ID: <invoice-2026-031@vendor.example>" in attached.data
    (inner,) = mail.forwarded
    assert inner.message_id == "invoice-2026-031@vendor.example"
    assert inner.subject == "Factura 2026-031 – marzo"
    assert inner.from_address == "billing@vendor.example"
    assert inner.text == "Adjuntamos la factura de marzo: 1.200,00 €.\n"
    assert mail.normalized_subject == "Factura 2026-031"


def test_winmail_dat_is_kept_as_a_tnef_attachment() -> None:
    (tnef,) = parsed("winmail_dat.eml").attachments
    assert (tnef.filename, tnef.content_type, tnef.size) == (
        "winmail.dat",
        "application/ms-tnef",
        43,
    )
    assert tnef.data.startswith(b"\x78\x9f\x3e\x22")  # TNEF's signature, 0x223E9F78


def test_winmail_dat_sent_as_octet_stream_is_still_tnef() -> None:
    raw = message(
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="b"\n',
        "--b\nContent-Type: text/plain\n\nSee attachment.\n--b\n"
        'Content-Type: application/octet-stream; name="WINMAIL.DAT"\n'
        "Content-Transfer-Encoding: base64\n\neJ8+Ig==\n--b--\n",
    )
    (tnef,) = parse(raw).attachments
    assert (tnef.filename, tnef.content_type, tnef.data) == (
        "WINMAIL.DAT",
        "application/ms-tnef",
        b"\x78\x9f\x3e\x22",
    )


def test_rfc_2231_and_rfc_2047_file_names_are_decoded_and_lose_their_directories() -> None:
    mail = parsed("rfc2231_filenames.eml")
    assert [a.filename for a in mail.attachments] == [
        "Rechnung März 2026.pdf",
        "État des lieux signé.pdf",
        "Привет.txt",
        "passwd",
        "report.docx",
    ]
    assert mail.attachments[2].data == "привет\n".encode()
    assert mail.text == "See the files."


# --- charsets ------------------------------------------------------------------------------

JAPANESE = "お問い合わせありがとうございます。\n請求書を確認いたします。\n"
CZECH = (
    "Dobrý den,\nposílám fakturu za březen. Příliš žluťoučký kůň úpěl ďábelské ódy.\n"
    "S pozdravem\nJiří Šťastný\n"
)


@pytest.mark.parametrize("name", ["iso2022jp.eml", "iso2022jp_no_charset.eml"])
def test_iso_2022_jp_with_and_without_a_charset_parameter(name: str) -> None:
    mail = parsed(name)
    assert (mail.subject, mail.text) == ("請求書について", JAPANESE)


def test_iso_2022_jp_encoded_words_in_the_sender_name() -> None:
    assert parsed("iso2022jp.eml").from_name == "山田太郎"


@pytest.mark.parametrize("name", ["windows1250.eml", "windows1250_no_charset.eml"])
def test_windows_1250_with_and_without_a_charset_parameter(name: str) -> None:
    assert parsed(name).text == CZECH


def test_windows_1250_encoded_words() -> None:
    mail = parsed("windows1250.eml")
    assert (mail.subject, mail.from_name) == ("Faktura za březen", "Jiří Šťastný")


def test_wrong_charset_labels_and_invalid_bytes() -> None:
    assert parsed("wrong_charsets.eml").text.split("\n\n") == [
        "Latin-1 labelled UTF-8: café crème.",
        "UTF-8 labelled Latin-1: déjà vu.",
        "One bad byte in UTF-8: na\ufffdve \ufffd résumé.",
        "Unknown label: naïve.\n",
    ]


def test_eight_bit_header_bytes_are_decoded() -> None:
    mail = parsed("eight_bit_headers.eml")
    assert mail.subject == "Rückerstattung für Bestellung 4711 – dringend"  # UTF-8 (RFC 6532)
    assert mail.from_name == "Jörg Müller"  # Latin-1, the body's charset
    assert mail.from_address == "joerg@example.de"
    assert mail.text == "Grüße aus Köln\n"


def test_undecodable_header_bytes_become_replacement_characters() -> None:
    mail = parse(b"From: a@example.org\nSubject: price \xff\xfe 10\n\nbody\n")
    assert mail.subject == "price \ufffd\ufffd 10"


@pytest.mark.parametrize(
    ("data", "label", "text"),
    [
        (b"plain", None, "plain"),
        ("grüße".encode("cp1252"), "iso-8859-1", "grüße"),
        ("„quoted“".encode("cp1252"), "iso-8859-1", "„quoted“"),  # cp1252 labelled Latin-1
        ("日本語".encode("iso2022_jp"), "us-ascii", "日本語"),
        ("naïve".encode(), "rot13", "naïve"),  # not a text encoding
        (b"a\x00b", "utf-8", "ab"),  # NUL cannot be stored
    ],
)
def test_decode(data: bytes, label: str | None, text: str) -> None:
    assert decode(data, label) == text


# --- identity and thread fields ------------------------------------------------------------


def test_without_a_message_id_the_id_is_the_hash_of_the_raw_message() -> None:
    raw = load("no_message_id.eml")
    mail = parse(raw)
    assert mail.message_id == "sha256:" + hashlib.sha256(raw.strip()).hexdigest()
    # the same message with SMTP's line ends (or another copy) is the same message
    assert parse(raw.replace(b"\n", b"\r\n")).message_id == mail.message_id
    assert parse(raw.replace(b"No id", b"Another")).message_id != mail.message_id


def test_message_id_fields_without_brackets_and_with_noise() -> None:
    mail = parse(
        message(
            "Message-ID: bare-id@example.org\n"
            "In-Reply-To: <a@x> (Jane's message of Tuesday)\n"
            "References: <r1@x>\n <r2@x> <r1@x>\n"
        )
    )
    assert (mail.message_id, mail.in_reply_to) == ("bare-id@example.org", "a@x")
    assert mail.references == ("r1@x", "r2@x")


def test_an_overlong_message_id_is_hashed_to_fit_the_event() -> None:
    long_id = "x" * 600 + "@example.org"
    mail = parse(message(f"Message-ID: <{long_id}>\n"))
    assert mail.message_id == "sha256:" + hashlib.sha256(long_id.encode()).hexdigest()


def test_malformed_addresses_and_dates_are_left_out_not_fatal() -> None:
    mail = parse(
        b"From: =?utf-8?q?broken <not an address\nTo: ok@example.org, @@, <>\n"
        b"Cc: undisclosed-recipients:;\nDate: yesterday at noon\n\nbody\n"
    )
    assert (mail.from_address, mail.to, mail.cc, mail.date) == (
        None,
        ("ok@example.org",),
        (),
        None,
    )


def test_a_date_without_zone_is_utc() -> None:
    assert parse(message("Date: Tue, 3 Mar 2026 10:00:00 -0000\n")).date == datetime(
        2026, 3, 3, 10, tzinfo=UTC
    )


# --- automatic mail, bounces, authentication -----------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-generated\n", "auto-submitted: auto-generated"),
        ("Auto-Submitted: Auto-Replied; owner-email=x@y\n", "auto-submitted: auto-replied"),
        ("Auto-Submitted: no\n", None),
        ("X-Autoreply: yes\n", "x-autoreply"),
        ("X-Autorespond: on\n", "x-autorespond"),
        ("Precedence: bulk\n", "precedence: bulk"),
        ("Precedence: Junk\n", "precedence: junk"),
        ("Precedence: list\n", "precedence: list"),
        ("Precedence: first-class\n", None),
        ("X-Auto-Response-Suppress: All\n", "x-auto-response-suppress"),
        ("List-Id: Shop news <news.shop.example>\n", "list-id"),
        ("Return-Path: <>\n", "return-path: <>"),
        ("Return-Path: < >\n", "return-path: <>"),
        ("Return-Path: <jane@example.org>\n", None),
        ("", None),
    ],
)
def test_automatic_mail_is_recognised(header: str, reason: str | None) -> None:
    assert parse(message(header)).automatic == reason


def test_list_mail_from_the_corpus_is_automatic() -> None:
    assert parsed("list_mail.eml").automatic == "list-id"


def test_a_delayed_delivery_report_is_a_soft_bounce() -> None:
    bounce = parsed("dsn_delayed.eml").bounce
    assert bounce is not None
    assert (bounce.recipients, bounce.status, bounce.action, bounce.hard) == (
        ("slow@example.com",),
        "4.4.7",
        "delayed",
        False,
    )
    assert bounce.diagnostic == "451 4.4.7 Try again later"
    assert bounce.original_message_id == "179541933800.1.2.conv-44@acme.example"


def test_a_report_that_everything_was_delivered_is_no_bounce() -> None:
    raw = load("dsn_delayed.eml").replace(b"Action: delayed", b"Action: delivered")
    assert parse(raw).bounce is None


def test_a_qmail_bounce_is_recognised_by_flufl_bounce() -> None:
    mail = parsed("qmail_bounce.eml")
    assert mail.bounce is not None
    assert mail.bounce.recipients == ("gone@example.net",)
    assert (mail.bounce.status, mail.bounce.hard, mail.bounce.standard) == ("5.1.1", True, False)
    assert mail.bounce.original_message_id == "179541933900.7.7.conv-45@acme.example"


def test_a_person_writing_about_failures_is_no_bounce() -> None:
    mail = parse(message("", "My delivery failed: 5.1.1 unknown user, can you help?\n"))
    assert mail.bounce is None


def test_dmarc_failure_is_flagged_and_a_forged_lower_field_is_ignored() -> None:
    mail = parsed("dmarc_fail.eml")
    assert mail.authentication == {"dkim": "none", "spf": "softfail", "dmarc": "fail"}
    assert mail.dmarc_failed


def test_authentication_results_of_several_milters_are_merged() -> None:
    raw = message(
        "Authentication-Results: mx.acme.example; dmarc=pass header.from=example.org\n"
        "Authentication-Results: mx.acme.example; dkim=pass (2048-bit key; secure)"
        " header.d=example.org\n"
        "Authentication-Results: mx.acme.example 1; spf=fail smtp.mailfrom=example.org\n"
        "Authentication-Results: other.example; dkim=fail; dmarc=fail\n"
    )
    mail = parse(raw)
    assert mail.authentication == {"dmarc": "pass", "dkim": "pass", "spf": "fail"}
    assert not mail.dmarc_failed
    # by default the topmost field's server is trusted; naming ours, no one else's counts
    relayed = b"Authentication-Results: relay.example; dmarc=fail\n" + raw
    assert parse(relayed).authentication == {"dmarc": "fail"}
    assert parse(relayed, authserv_id="MX.acme.example").authentication == mail.authentication
    assert authentication(message_from_bytes(b"X: y\n\n", policy=policy.default)) == {}


# --- quoted history ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "new", "history_starts"),
    [
        (  # English (Gmail)
            "Thanks, that fixed it.\n\nOn Tue, 3 Mar 2026 at 11:12, Acme Support "
            "<support@acme.example> wrote:\n> Please restart.\n",
            "Thanks, that fixed it.",
            "On Tue, 3 Mar 2026 at 11:12",
        ),
        (  # English, the attribution wrapped over two lines
            "Works now.\n\nOn Tue, 3 Mar 2026 at 11:12, Acme Support Team of the Example "
            "Company <support@acme.example>\nwrote:\n\n> Please restart.\n",
            "Works now.",
            "On Tue, 3 Mar 2026",
        ),
        (  # French, with the narrow no-break space before the colon
            "Merci, c'est réglé.\n\nLe mar. 3 mars 2026 à 11:12, Acme Support "
            "<support@acme.example> a écrit\u202f:\n> Veuillez redémarrer.\n",
            "Merci, c'est réglé.",
            "Le mar. 3 mars 2026",
        ),
        (  # Portuguese
            "Obrigado, funcionou.\n\nEm ter., 3 de mar. de 2026 às 11:12, Acme Support "
            "<support@acme.example> escreveu:\n> Reinicie o roteador.\n",
            "Obrigado, funcionou.",
            "Em ter., 3 de mar.",
        ),
        (  # Russian
            "Спасибо, всё работает.\n\n3 марта 2026 г., в 11:12, Acme Support "
            "<support@acme.example> написал(а):\n> Перезагрузите роутер.\n",
            "Спасибо, всё работает.",
            "3 марта 2026 г.",
        ),
        (  # Russian, Thunderbird
            "Да.\n\nИван Петров пишет:\n> Вы получили?\n",
            "Да.",
            "Иван Петров пишет:",
        ),
        (  # German
            "Danke, jetzt geht es.\n\nAm Di., 3. März 2026 um 11:12 Uhr schrieb Acme Support "
            "<support@acme.example>:\n> Bitte neu starten.\n",
            "Danke, jetzt geht es.",
            "Am Di., 3. März 2026",
        ),
        (  # Spanish
            "Gracias, ya funciona.\n\nEl mar, 3 mar 2026 a las 11:12, Acme Support "
            "(<support@acme.example>) escribió:\n> Reinicie el router.\n",
            "Gracias, ya funciona.",
            "El mar, 3 mar 2026",
        ),
        (  # Outlook, English, "Original Message" divider
            "Please cancel my order.\n\n-----Original Message-----\nFrom: Acme Support "
            "<support@acme.example>\nSent: Tuesday, March 3, 2026 11:12 AM\nTo: Jane "
            "<jane@example.org>\nSubject: Your order\n\nYour order shipped.\n",
            "Please cancel my order.",
            "-----Original Message-----",
        ),
        (  # Outlook, German header block under a rule
            "Bitte stornieren.\n\n________________________________\nVon: Acme Support "
            "<support@acme.example>\nGesendet: Dienstag, 3. März 2026 11:12\nAn: Jane\n"
            "Betreff: Ihre Bestellung\n\nIhre Bestellung ist unterwegs.\n",
            "Bitte stornieren.",
            "________________________________\nVon: Acme Support",
        ),
        (  # Outlook, Spanish header block without a rule
            "Recibido.\n\nDe: Acme Support <support@acme.example>\nEnviado el: martes, 3 de "
            "marzo de 2026 11:12\nPara: Carla\nAsunto: Pedido\n\nSu pedido salió.\n",
            "Recibido.",
            "De: Acme Support",
        ),
        (  # Outlook, Russian header block
            "Спасибо!\n\nОт: Acme Support <support@acme.example>\nОтправлено: 3 марта 2026 г."
            "\nКому: Иван\nТема: Заказ\n\nВаш заказ отправлен.\n",
            "Спасибо!",
            "От: Acme Support",
        ),
        (  # ">"-quoted lines without an attribution
            "Yes, please.\n> Shall we ship it?\n> Reply yes or no.\n",
            "Yes, please.",
            "> Shall we ship it?",
        ),
        (  # the signature separator
            "Short answer: yes.\n\n-- \nJane Doe\nACME Corp\n",
            "Short answer: yes.",
            "-- \nJane Doe",
        ),
        (  # a phone's tagline
            "Ok!\n\nSent from my iPhone\n\n> On 3 Mar 2026, at 11:12, Acme <a@b.c> wrote:\n",
            "Ok!",
            "Sent from my iPhone",
        ),
    ],
)
def test_new_part_is_split_from_the_history(text: str, new: str, history_starts: str) -> None:
    found_new, history = new_part(text)
    assert found_new == new
    assert history.startswith(history_starts)


def test_a_message_without_history_is_all_new() -> None:
    text = "On Monday we talk about it.\nI wrote: nothing yet.\n"
    assert new_part(text) == (text.strip(), "")


def test_a_bottom_posted_reply_keeps_its_answers_as_new() -> None:
    text = "> What is the price?\n\nIt is 10 EUR.\n\n> And delivery?\n\nTomorrow.\n-- \nBob\n"
    assert new_part(text) == (
        "It is 10 EUR.\n\nTomorrow.",
        "> What is the price?\n> And delivery?\n-- \nBob",
    )


def test_an_outlook_reply_from_the_corpus() -> None:
    mail = parsed("outlook_reply.eml")
    assert mail.references == (
        "179541933999.1.1.conv-46@acme.example",
        "179541934000.1.1.conv-46@acme.example",
    )
    new, history = mail.new_part()
    assert new == "Bonjour,\n\nLe colis n\u2019est toujours pas arrivé.\n\nCordialement,\nClaire"
    assert history.startswith("________________________________\nDe : Acme Support")
    assert history.endswith("Votre commande a été expédiée.")
    assert mail.normalized_subject == "Votre commande 5521"


@pytest.mark.parametrize(
    ("subject", "normalized"),
    [
        ("Re: RE: Fwd: hello", "hello"),
        ("AW: WG: Rechnung  März", "Rechnung März"),
        ("TR : RE : Commande 5521", "Commande 5521"),
        ("RES: ENC: Pedido", "Pedido"),
        ("RV: Fw: Factura", "Factura"),
        ("Ответ: Счёт", "Счёт"),
        ("Re[2]: Re (3): x", "x"),
        ("  re:re:   spaced    out ", "spaced out"),
        ("Reply needed", "Reply needed"),
        ("Automatische Antwort: Re: x", "Automatische Antwort: Re: x"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalized_subject(subject: str | None, normalized: str) -> None:
    assert normalized_subject(subject) == normalized


# --- HTML ----------------------------------------------------------------------------------


def test_sanitised_html_has_no_scripts_handlers_javascript_or_remote_images() -> None:
    html = (
        '<p onclick="steal()">Hi <a href="javascript:alert(1)">click</a> '
        '<a href="https://acme.example/help">help</a></p><script>alert(1)</script>'
        '<img src="cid:logo@acme.example" alt="logo">'
        '<img src="https://tracker.example/p.gif" onerror="alert(2)">'
        '<IMG SRC="HTTP://TRACKER.EXAMPLE/Q.GIF"><img src="relative.png">'
        '<div style="color: red; background: url(https://tracker.example/bg.png)">x</div>'
        '<span style="color: blue">blue</span><iframe src="https://evil.example"></iframe>'
    )
    shown = sanitized_html(html)
    assert "<script" not in shown and "alert" not in shown and "onclick" not in shown
    assert "javascript:" not in shown and "<iframe" not in shown
    assert "tracker" not in shown.lower() and "relative.png" not in shown
    assert '<img src="cid:logo@acme.example" alt="logo">' in shown
    assert 'href="https://acme.example/help"' in shown
    assert '<span style="color:blue">blue</span>' in shown
    # when the agent asks, remote images come back; scripts never do
    asked = sanitized_html(html, remote_images=True)
    assert '<img src="https://tracker.example/p.gif">' in asked
    assert "onerror" not in asked and "<script" not in asked


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(raw=st.binary(max_size=3000))
def test_arbitrary_bytes_parse_or_are_unparseable(raw: bytes) -> None:
    try:
        result = parse(raw)
    except UnparseableEmail:
        return
    assert_storable(result)


header_value = st.binary(max_size=120)
charset_label = st.sampled_from(
    ["utf-8", "iso-8859-1", "windows-1250", "iso-2022-jp", "x-bogus", "rot13", "utf-16", ""]
)
encoding = st.sampled_from(["7bit", "8bit", "base64", "quoted-printable", "x-uuencode", "bogus"])
part = st.tuples(
    st.sampled_from(["text/plain", "text/html", "image/png", "message/rfc822", "multipart/mixed"]),
    charset_label,
    encoding,
    st.sampled_from(["", "inline", "attachment", "attachment; filename*=x''%FF%00\"", "?"]),
    header_value,
    st.binary(max_size=400),
)


@PROPERTY
@given(
    sender=header_value,
    subject=header_value,
    refs=header_value,
    auth=header_value,
    parts=st.lists(part, max_size=5),
)
def test_any_message_with_header_fields_parses(
    sender: bytes,
    subject: bytes,
    refs: bytes,
    auth: bytes,
    parts: list[tuple[str, str, str, str, bytes, bytes]],
) -> None:
    body = b"".join(
        b'--b\r\nContent-Type: %s; charset=%s; name="%s"\r\n'
        b"Content-Transfer-Encoding: %s\r\nContent-Disposition: %s\r\n"
        b"Content-ID: %s\r\n\r\n%s\r\n"
        % (kind.encode(), cs.encode(), value, cte.encode(), disp.encode(), value, data)
        for kind, cs, cte, disp, value, data in parts
    )
    raw = (
        b"Received: by mx.acme.example\r\nFrom: %s\r\nSubject: %s\r\nReferences: %s\r\n"
        b"Authentication-Results: %s\r\nReturn-Path: <>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        b"%s--b--\r\n" % (sender, subject, refs, auth, body)
    )
    result = parse(raw)  # it has header fields: it must parse, never raise
    if b"message-id" not in raw.lower():
        assert result.message_id.startswith("sha256:")
    assert_storable(result)


def test_message_ids_folded_into_encoded_words_are_read() -> None:
    # Python's own email package folds a long In-Reply-To into RFC 2047 words
    long_id = (
        "0123456789abcdef0123456789abcdef.qqqqqqqqqqqqqqqqqqqqqqqqqq.abcdefghijklmnop@acme.example"
    )
    raw = message(
        "From: a@example.org\nTo: support@acme.example\nMessage-ID: <x@y>\n"
        "In-Reply-To: =?utf-8?q?=3C"
        + long_id[:40]
        + "?=\n =?utf-8?q?"
        + long_id[40:].replace(".", "=2E").replace("@", "=40")
        + "=3E?=\n"
    )
    assert parse(raw).in_reply_to == long_id

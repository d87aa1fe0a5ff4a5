"""Email ingress (``email`` in the report): messages/s one SMTP process accepts, and through
to the timeline, beside a bare aiosmtpd server driven by the same client load.

- ``bare_aiosmtpd``: the yardstick, an aiosmtpd server on uvloop whose handler only counts
  (services/bench/bare_smtp.py, a process of its own);
- ``accepted``: ``omnihub run channel email`` as its own process (Kafka only, as the channel
  is deployed; the bench runs the HTTP ingress in its own process too), processors stopped:
  every 250 came after the broker acknowledged the message, staged as it came (the
  processors parse it and store its files);
- ``to_timeline``: fresh messages with the processors running, counted in PostgreSQL's
  timeline and on the department topics (consumed, never by ListOffsets), with the messages
  of ``accepted`` and of the warm-up: none lost, none twice.

The load: ``Options.email_connections`` aiosmtplib sessions at once, each sending message
after message over its one connection (MAIL, RCPT, DATA, then RSET, as an MTA reusing a
cached connection does); the messages are realistic multipart/mixed mail of ~15 KB (text and
HTML alternatives, an ~8 KB PDF attachment, the headers a receiving MX sees), made before the
clock starts, each with its own Message-ID.
"""

from __future__ import annotations

import asyncio
import base64
import os
import quopri
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import aiosmtplib
import asyncpg

from schemas.ids import event_id_for
from services.bench import data, measure, yardstick
from services.bench.load import LoadResult
from services.bench.run import LOAD_GENERATOR, Options, Procs, drain, preload, start_workers
from services.config import Settings
from services.routing.engine import Router
from services.stack.embedded import Stack
from services.stack.ports import free_port, wait_for_port
from services.supervisor import stop

INBOXES = "support@acme.example, billing@acme.example=finance"
SIGNING_KEY = "bench-email-signing-key-0123456789abcdef"  # a bench-only secret
#: The issue's targets: messages/s one process accepts (on this machine at its usual speed)...
TARGET_PER_SECOND = 500
#: ... and the share of what the bare aiosmtpd handler reaches in the same run.
TARGET_SHARE_OF_BARE = 0.5
#: The plain aiokafka loop's usual speed on this machine (docs/performance.md): the
#: per-second target is judged on the accepted rate scaled by the run's loop to that speed.
#: Messages each server gets before the clock starts (lazy imports, caches; the channel's
#: process answers 451 until it has learnt the period keys from Kafka).
WARM_UP = 50
ATTACHMENT_BYTES = 8_192
SAY_STEPS = 3


def steps(opts: Options) -> int:
    """How many times the section calls ``say``."""
    return SAY_STEPS if opts.email_messages else 0


@dataclass(frozen=True)
class Mail:
    """One message as it is sent: envelope, bytes (CRLF line ends), Message-ID."""

    sender: str
    recipient: str
    raw: bytes
    message_id: str

    @property
    def event_id(self) -> uuid.UUID:
        """The event id the channel derives from the Message-ID."""
        return event_id_for("email", self.message_id)


FIRST = ("Claire", "Jonas", "Marta", "Ivan", "Lucia", "Tom", "Ines", "Pavel", "Emma", "Rui")
LAST = ("Martin", "Schmidt", "Silva", "Petrov", "Garcia", "Brown", "Dubois", "Novak", "Rossi")
INBOX_NAMES = ("support@acme.example", "billing@acme.example")
FILLER = (
    "I have attached the document we talked about on the phone, with the order lines and "
    "the delivery address. Our accounts department needs an answer before the end of the "
    "month, so I would be grateful if you could look into it this week. If anything is "
    "missing from the attachment, tell me and I will send it again from the office."
)
QUOTED = (
    "Thank you for contacting Acme. Your request has been received and a member of our "
    "team will get back to you within two working days. Please keep the reference of this "
    "conversation in the subject of your replies so that we can find it quickly."
)
STYLE = (
    '<style>@font-face{font-family:"Calibri";panose-1:2 15 5 2 2 2 4 3 2 4;}'
    "p.MsoNormal,li.MsoNormal,div.MsoNormal{margin:0cm;font-size:11.0pt;"
    'font-family:"Calibri",sans-serif;}a:link,span.MsoHyperlink{color:#0563C1;'
    'text-decoration:underline;}span.EmailStyle17{font-family:"Calibri",sans-serif;'
    'color:windowtext;}.MsoChpDefault{font-family:"Calibri",sans-serif;}'
    "@page WordSection1{size:612.0pt 792.0pt;margin:72.0pt 72.0pt 72.0pt 72.0pt;}"
    "div.WordSection1{page:WordSection1;}</style>"
)


def messages(count: int, crowd: Sequence[data.Person], seed: int, tag: str) -> list[Mail]:
    """``count`` distinct customer messages (see the module's docstring), ~15 KB each."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    made = []
    for n in range(count):
        person = crowd[rng.randrange(len(crowd))]
        name = f"{FIRST[rng.randrange(len(FIRST))]} {LAST[rng.randrange(len(LAST))]}"
        inbox = INBOX_NAMES[rng.randrange(len(INBOX_NAMES))]
        _, said = data.TEXTS[rng.randrange(len(data.TEXTS))]
        ref = f"{rng.randrange(10**7):07d}"
        mid = f"{tag}.{n}.{uuid.UUID(int=rng.getrandbits(128)).hex}@mail.example.com"
        date = format_datetime(now - timedelta(seconds=rng.randrange(30, 600)))
        made.append(
            Mail(
                person.email,
                inbox,
                _message(rng, person.email, name, inbox, said, ref, mid, date),
                mid,
            )
        )
    return made


def _message(
    rng: random.Random,
    sender: str,
    name: str,
    inbox: str,
    said: str,
    ref: str,
    mid: str,
    date: str,
) -> bytes:
    host = f"mail-{rng.randrange(1, 60)}.outbound.example.com"
    queue_id = f"{rng.getrandbits(40):010X}"
    signature = base64.b64encode(rng.randbytes(256)).decode()
    text = (
        f"Hello,\n\n{said} (ref. {ref})\n\n{FILLER}\n\nKind regards,\n{name}\n"
        f"Purchasing | Example Trading Ltd | +44 20 7946 {rng.randrange(10**4):04d}\n\n"
        f"On {date}, Acme Support <{inbox}> wrote:\n> {QUOTED}\n>\n> Acme Support\n"
    )
    html = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=utf-8">'
        f'{STYLE}</head><body lang="EN-GB" link="#0563C1"><div class="WordSection1">'
        '<p class="MsoNormal">Hello,</p><p class="MsoNormal">&nbsp;</p>'
        f'<p class="MsoNormal">{said} (ref. {ref})</p><p class="MsoNormal">&nbsp;</p>'
        f'<p class="MsoNormal">{FILLER}</p><p class="MsoNormal">&nbsp;</p>'
        f'<p class="MsoNormal">Kind regards,<br>{name}<br><span style="color:#7F7F7F">'
        'Purchasing | Example Trading Ltd</span></p><div style="border:none;border-top:solid '
        '#E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Acme '
        f"Support &lt;{inbox}&gt;<br><b>Sent:</b> {date}</p></div>"
        f'<blockquote style="margin-left:6pt"><p class="MsoNormal">{QUOTED}</p></blockquote>'
        "</div></body></html>"
    )
    pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + rng.randbytes(ATTACHMENT_BYTES - 15)
    attachment = base64.encodebytes(pdf).decode().replace("\n", "\r\n")
    mixed, alternative = f"=_mixed_{queue_id}", f"=_alt_{queue_id}"
    head = [
        f"Return-Path: <{sender}>",
        f"Received: from {host} ({host} [203.0.113.{rng.randrange(1, 255)}])",
        f"\tby mx1.acme.example (Postfix) with ESMTPS id {queue_id}",
        f"\tfor <{inbox}>; {date}",
        f"Received: by {host} with SMTP id {rng.getrandbits(64):016x}",
        f"\tfor <{inbox}>; {date}",
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s2026;",
        f"\tt={rng.randrange(10**9, 2 * 10**9)}; h=from:to:subject:date:message-id:mime-version;",
        f"\tbh={base64.b64encode(rng.randbytes(32)).decode()};",
        *(
            f"\tb={signature[i : i + 70]}" if i == 0 else f"\t{signature[i : i + 70]}"
            for i in range(0, len(signature), 70)
        ),
        "Authentication-Results: mx1.acme.example; dkim=pass header.d=example.com;",
        "\tspf=pass smtp.mailfrom=example.com; dmarc=pass header.from=example.com",
        "MIME-Version: 1.0",
        f"Date: {date}",
        f'From: "{name}" <{sender}>',
        f"To: Acme Support <{inbox}>",
        f"Subject: Request {ref}",
        f"Message-ID: <{mid}>",
        "Thread-Topic: Request",
        "Content-Language: en-GB",
        "X-Mailer: Microsoft Outlook 16.0",
        f'Content-Type: multipart/mixed; boundary="{mixed}"',
    ]
    body = [
        "",
        "This is a multi-part message in MIME format.",
        "",
        f"--{mixed}",
        f'Content-Type: multipart/alternative; boundary="{alternative}"',
        "",
        f"--{alternative}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _qp(text),
        f"--{alternative}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        _qp(html),
        f"--{alternative}--",
        "",
        f"--{mixed}",
        f'Content-Type: application/pdf; name="order-{ref}.pdf"',
        f'Content-Disposition: attachment; filename="order-{ref}.pdf"',
        "Content-Transfer-Encoding: base64",
        "",
        attachment,
        f"--{mixed}--",
        "",
    ]
    return "\r\n".join(head + body).encode("ascii")


def _qp(text: str) -> str:
    return quopri.encodestring(text.encode()).decode("ascii").replace("\n", "\r\n")


@dataclass
class Sent:
    """What a load got back: answers by SMTP code, and the messages answered 250."""

    load: LoadResult = field(default_factory=LoadResult)
    accepted: list[Mail] = field(default_factory=list)
    cpu_us_per_message: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The load's figures with the messages/s answered 250."""
        answered = self.load.summary()
        seconds = max(self.load.finished - self.load.started, 1e-9)
        return {
            "messages": answered["requests"],
            "messages_per_second": round(len(self.accepted) / seconds, 1),
            **{k: v for k, v in answered.items() if k not in ("requests", "per_second")},
            "cpu_us_per_message": self.cpu_us_per_message,
        }


async def _session(port: int) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=60)
    await client.connect()
    await client.ehlo()
    return client


async def _one(client: aiosmtplib.SMTP, mail: Mail) -> int:
    """Send one message and RSET; the SMTP code of its answer."""
    try:
        await client.sendmail(mail.sender, [mail.recipient], mail.raw)
        code = 250
    except aiosmtplib.SMTPRecipientsRefused as refused:
        code = refused.recipients[0].code if refused.recipients else 550
    except aiosmtplib.SMTPResponseException as answer:
        code = answer.code
    await client.rset()
    return code


async def send(
    port: int, mails: Sequence[Mail], connections: int, groups: dict[str, list[int]]
) -> Sent:
    """Every message over ``connections`` sessions opened beforehand, as fast as they are
    answered; the CPU each group of processes spent a message meanwhile."""
    sent = Sent()
    queue = iter(mails)
    clients = [await _session(port) for _ in range(min(connections, len(mails)))]

    async def sender(client: aiosmtplib.SMTP) -> None:
        for mail in queue:
            began = time.perf_counter()
            try:
                code = await _one(client, mail)
            except (aiosmtplib.SMTPServerDisconnected, OSError):
                sent.load.errors += 1  # the message is not retried: counted as not accepted
                client = await _session(port)
                clients.append(client)
                continue
            sent.load.record(code, time.perf_counter() - began)
            if code == 250:
                sent.accepted.append(mail)

    cpu_before = measure.cpu_seconds(groups, {LOAD_GENERATOR})
    sent.load.started = time.perf_counter()
    try:
        await asyncio.gather(*(sender(c) for c in clients))
    finally:
        sent.load.finished = time.perf_counter()
        cpu = measure.cpu_seconds(groups, {LOAD_GENERATOR})
        for client in clients:
            if client.is_connected:
                client.close()
    count = max(1, len(mails))
    sent.cpu_us_per_message = {
        name: round((cpu[name] - cpu_before.get(name, 0.0)) / count * 1e6) for name in cpu
    }
    return sent


async def warm_up(port: int, mails: Sequence[Mail], timeout: float = 60) -> list[Mail]:
    """Send each message on one session until it is answered 250 (451 while the channel's
    process has not learnt the period keys); the messages accepted."""
    client = await _session(port)
    deadline = time.monotonic() + timeout
    try:
        for mail in mails:
            while await _one(client, mail) != 250:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SMTP server on port {port} kept refusing the warm-up")
                await asyncio.sleep(0.2)
    finally:
        client.close()
    return list(mails)


def groups_of(server: str, proc: subprocess.Popen[bytes]) -> dict[str, list[int]]:
    """The server's process and this one (the load generator)."""
    return {server: [proc.pid], LOAD_GENERATOR: [os.getpid()]}


def start_bare(port: int, logs: Path) -> subprocess.Popen[bytes]:
    """The counting aiosmtpd server (services/bench/bare_smtp.py) in a process of its own."""
    with open(logs / "bare-smtp.log", "ab") as log:
        return subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "services.bench.bare_smtp", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def serving(proc: subprocess.Popen[bytes], port: int) -> None:
    """Wait until the server's port accepts connections (RuntimeError if it exited)."""
    alive = lambda: proc.poll() is None  # noqa: E731
    await asyncio.to_thread(wait_for_port, "127.0.0.1", port, 60, alive)


def start_channel(procs: Procs) -> tuple[subprocess.Popen[bytes], int]:
    """``omnihub run channel email`` with Kafka only (no DATABASE_URL), as the channel is
    deployed; its SMTP port. Kept in ``procs`` (``email``) for memory and stopping."""
    smtp = free_port()
    extra = {
        "OMNIHUB_SMTP_PORT": str(smtp),
        "EMAIL_INBOXES": INBOXES,
        "EMAIL_SIGNING_KEY": SIGNING_KEY,
    }
    proc, _ = procs.start_channel("email", extra)
    return proc, smtp


async def counted(
    conn: asyncpg.Connection, watch: measure.RoutedWatch, mails: Sequence[Mail], timeout: float
) -> dict[str, Any]:
    """Messages in the timeline and on their department topics (consumed), once each; the
    last commit's time (epoch seconds, from the rows)."""
    ids = [m.event_id for m in mails]
    routed, _ = await watch.wait(ids, timeout)
    rows, first, last = await measure.wait_timeline(conn, ids, timeout)
    return {
        "rows": rows,
        "routed": routed,
        "first": first,
        "last": last,
        "duplicated": watch.duplicates(ids),
    }


async def section(
    opts: Options,
    settings: Settings,
    stack: Stack,
    procs: Procs,
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    plain_loop: float | None,
    say: Callable[[str], None],
    backlog: Sequence[uuid.UUID] = (),
) -> dict[str, Any]:
    """The ``email`` section: bare, accepted (processors stopped), to the timeline
    (``opts.workers`` processors running, left running), correctness and targets.
    ``backlog``: events already on the inbound topic, drained before ``to_timeline``."""
    began = time.monotonic()
    count, connections = opts.email_messages, opts.email_connections
    crowd = data.people(opts.customers, opts.multi_share, opts.seed + 30)
    mails = messages(count, crowd, opts.seed + 31, "ea")
    warm = messages(WARM_UP, crowd, opts.seed + 32, "ew")
    fresh = messages(count, crowd, opts.seed + 33, "et")
    # both servers start while the processors stop (nothing is measured meanwhile)
    bare_port = free_port()
    bare_proc = await asyncio.to_thread(start_bare, bare_port, procs.logs)
    proc, port = start_channel(procs)
    procs.stop("processors")

    say(f"email: bare aiosmtpd, {count} messages over {connections} connections")
    try:
        await serving(bare_proc, bare_port)
        await warm_up(bare_port, warm)
        counting = await send(bare_port, mails, connections, groups_of("bare_aiosmtpd", bare_proc))
    finally:
        await asyncio.to_thread(stop, bare_proc, "bare_smtp", 10)

    say("email: accepted by one SMTP process (omnihub run channel email)")
    await serving(proc, port)
    accepted_warm = await warm_up(port, warm)
    accepted = await send(port, mails, connections, groups_of("email", proc))

    say(f"email: through to the timeline, {opts.workers} worker(s)")
    await start_workers(settings, procs, opts.workers)
    before = [*accepted_warm, *accepted.accepted]
    # the messages above, and anything else waiting, processed before the clock starts
    await counted(conn, watch, before, 300)
    if backlog:
        await drain(conn, watch, backlog)
    started = time.time()
    through = await send(port, fresh, connections, groups_of("email", proc))
    done = await counted(conn, watch, through.accepted, 300)
    procs.check_alive([proc])
    procs.stop("email")

    everything = [*before, *through.accepted]
    total = await counted(conn, watch, everything, 60)
    bare_rate = counting.summary()["messages_per_second"]
    rate = accepted.summary()["messages_per_second"]
    scaled = yardstick.scaled(rate, plain_loop)
    share = round(rate / bare_rate, 3) if bare_rate else None
    return {
        "section_seconds": round(time.monotonic() - began, 1),
        "connections": connections,
        "message_bytes": round(sum(len(m.raw) for m in mails) / max(1, len(mails))),
        "bare_aiosmtpd": counting.summary(),
        "accepted": accepted.summary(),
        "to_timeline": {
            # from the first message sent to the last one's timeline commit
            "messages_per_second": round(len(through.accepted) / (done["last"] - started))
            if through.accepted and done["last"] > started
            else None,
            "workers": opts.workers,
            "smtp": through.summary(),
        },
        "ratio_accepted_to_bare": share,
        "correctness": {
            "accepted": len(everything),
            "not_accepted": sum(
                s.load.errors + sum(n for c, n in s.load.statuses.items() if c != 250)
                for s in (accepted, through)
            ),
            "lost_from_timeline": len(everything) - total["rows"],
            "lost_from_department_topics": len(everything) - total["routed"],
            "duplicated_on_department_topics": total["duplicated"],
        },
        "targets": {
            "per_second": TARGET_PER_SECOND,
            "plain_aiokafka_loop_events_per_second": round(plain_loop) if plain_loop else None,
            "accepted_scaled_to_usual_machine": round(scaled) if scaled is not None else None,
            "per_second_met": rate >= TARGET_PER_SECOND,
            "per_second_met_scaled": scaled >= TARGET_PER_SECOND if scaled is not None else None,
            "share_of_bare": TARGET_SHARE_OF_BARE,
            "share_of_bare_met": share >= TARGET_SHARE_OF_BARE if share is not None else None,
        },
    }


async def alone(
    opts: Options,
    settings: Settings,
    stack: Stack,
    procs: Procs,
    conn: asyncpg.Connection,
    watch: measure.RoutedWatch,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """``omnihub bench --email-only``: the plain aiokafka loop over ``opts.events`` preloaded
    events (the yardstick the per-second target is scaled by; the preload also announces the
    period keys the channel's process needs), then the section, which drains them."""
    say(f"yardstick: {opts.events} events preloaded, plain aiokafka loop")
    crowd = data.people(opts.customers, opts.multi_share, opts.seed)
    events = data.events(opts.events, crowd, opts.seed + 1, "b1")
    await preload(stack.bootstrap, conn, events)
    router = Router.load(settings.routing_rules)
    plain = await yardstick.plain_loop(stack.bootstrap, stack.database_url, opts.events, router)
    backlog = [e.event_id for e in events]
    return {
        "yardstick": {"plain_aiokafka_loop_events_per_second": round(plain)},
        "email": await section(opts, settings, stack, procs, conn, watch, plain, say, backlog),
    }

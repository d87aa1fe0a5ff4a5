"""Pure parsing of Twilio's webhooks into interactions (no I/O, no clock: time is passed in).

Every interaction's ``provider_message_id`` is derived from Twilio's ids, so a retried webhook
yields the same event id and the timeline keeps one row:

| webhook | kind | provider_message_id |
| --- | --- | --- |
| ``sms`` (SMS and MMS) | message | ``MessageSid`` |
| ``message-status`` | status (outbound, carries ``delivery``) | ``{MessageSid}:{MessageStatus}`` |
| ``voice`` (incoming call) | call | ``{CallSid}:{CallStatus}`` |
| ``voice/status`` | call | ``{CallSid}:{CallStatus}`` |
| ``voice/recording`` | voicemail (recording as attachment) | ``RecordingSid`` |
| ``voice/transcription`` | voicemail (transcription as text) | ``TranscriptionSid`` |
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError

from channels.base import UNRESOLVED_COMMAND, ChannelEvent, InboundRequest, ParseError
from channels.twilio.models import CALL_STATUSES, MESSAGE_STATES, Webhook, describe_error
from schemas import (
    Attachment,
    Channel,
    ConsentChange,
    DeliveryStatus,
    Direction,
    Identity,
    IdentityType,
    Interaction,
    Kind,
    Purpose,
    ThreadRef,
)
from schemas.events import Scalar

Form = Mapping[str, str]
Keyword = Literal["stop", "start", "help"]

#: Twilio's default opt-out, opt-in and help keywords (the whole message, any case).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN = frozenset({"START", "UNSTOP", "YES"})
HELP = frozenset({"HELP", "INFO"})
#: Twilio's Advanced Opt-Out reports the keyword class it matched in OptOutType.
OPT_OUT_TYPES: dict[str, Keyword] = {"STOP": "stop", "START": "start", "HELP": "help"}

#: attributes["auto_reply"] of the outbound interaction recording the HELP answer.
HELP_REPLY = "help"
MAX_MEDIA = 10
#: What PostgreSQL cannot store (NUL) and what cannot be encoded as UTF-8 (lone surrogates).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(form: Form) -> dict[str, str]:
    """The form without the characters the hub cannot store (NUL, lone surrogates), which the
    schemas refuse: Twilio retries what it is refused and cannot change what it sends."""
    return {_UNSTORABLE.sub("", key): _UNSTORABLE.sub("", value) for key, value in form.items()}


def _missing(form: Form, *names: str) -> None:
    absent = [name for name in names if not form.get(name)]
    if absent:
        raise ParseError(
            f"Twilio webhook without {', '.join(absent)}",
            details=[{"field": n, "message": "required", "type": "missing"} for n in absent],
        )


def _phone(form: Form, name: str) -> Identity:
    value = form.get(name, "")
    try:
        return Identity(type=IdentityType.PHONE, value=value)
    except ValidationError:
        raise ParseError(
            f"{name} is not a phone number the hub can identify a customer by: {value!r}",
            details=[{"field": name, "message": "not a phone number", "type": "value_error"}],
        ) from None


def _int(form: Form, name: str) -> int | None:
    value = form.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ParseError(
            f"{name} is not an integer: {value!r}",
            details=[{"field": name, "message": "not an integer", "type": "int_parsing"}],
        ) from None


def _provider_ids(form: Form, **names: str) -> dict[str, str]:
    return {key: form[name] for key, name in names.items() if form.get(name)}


def _attributes(**values: Scalar) -> dict[str, Scalar]:
    return {key: value for key, value in values.items() if value is not None}


def _create(**fields: Any) -> Interaction:
    try:
        return Interaction.create(**fields)
    except ValidationError as exc:
        details: list[dict[str, object]] = [
            {
                "field": ".".join(str(p) for p in err["loc"]) or "body",
                "message": err["msg"],
                "type": err["type"],
            }
            for err in exc.errors(include_url=False, include_input=False)
        ]
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details)
        raise ParseError(f"invalid Twilio webhook: {summary}", details=details) from None


def duration_text(seconds: int) -> str:
    """``87`` -> ``1 min 27 s``."""
    minutes, rest = divmod(seconds, 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


# --- SMS ---------------------------------------------------------------------------------


def keyword_of(body: str, opt_out_type: str | None = None) -> Keyword | None:
    """The consent or help keyword of a message: the whole body, trimmed, any case.

    ``OptOutType`` (Twilio's Advanced Opt-Out, which also matches custom keywords) wins.
    """
    if opt_out_type and opt_out_type.strip().upper() in OPT_OUT_TYPES:
        return OPT_OUT_TYPES[opt_out_type.strip().upper()]
    word = body.strip().upper()
    if word in OPT_OUT:
        return "stop"
    if word in OPT_IN:
        return "start"
    if word in HELP:
        return "help"
    return None


def consent_for(keyword: Keyword | None, word: str) -> list[ConsentChange]:
    """SMS service consent withdrawn by STOP and its synonyms, given again by START."""
    if keyword not in ("stop", "start"):
        return []
    reason = f"the customer replied {word.strip()[:40]} by SMS"
    return [
        ConsentChange(
            channel=Channel.SMS,
            purpose=Purpose.SERVICE,
            granted=keyword == "start",
            reason=reason,
        )
    ]


def media_of(form: Form) -> list[Attachment]:
    """MMS media (NumMedia, MediaUrlN, MediaContentTypeN) as attachment metadata."""
    count = _int(form, "NumMedia") or 0
    if not 0 <= count <= MAX_MEDIA:
        raise ParseError(f"NumMedia out of range: {count}")
    attachments = []
    for index in range(count):
        _missing(form, f"MediaUrl{index}")
        url = form[f"MediaUrl{index}"]
        media_sid = urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        attachments.append(
            Attachment(
                content_type=form.get(f"MediaContentType{index}") or None,
                url=url,
                provider_id=media_sid if media_sid.startswith("ME") else None,
            )
        )
    return attachments


def parse_sms(form: Form, received_at: datetime, source: str, help_text: str) -> list[Interaction]:
    """An inbound SMS or MMS, with its consent change; a HELP also records the answer."""
    _missing(form, "MessageSid", "From")
    sid = form["MessageSid"]
    customer = _phone(form, "From")
    body = form.get("Body", "")
    opt_out_type = form.get("OptOutType") or None
    keyword = keyword_of(body, opt_out_type)
    message = _create(
        channel=Channel.SMS,
        direction=Direction.INBOUND,
        kind=Kind.MESSAGE,
        received_at=received_at,
        identities=[customer],
        text=body or None,
        attachments=media_of(form),
        provider_message_id=sid,
        provider_ids=_provider_ids(
            form,
            message_sid="MessageSid",
            account_sid="AccountSid",
            messaging_service_sid="MessagingServiceSid",
        ),
        source=source,
        consent=consent_for(keyword, body or opt_out_type or ""),
        attributes=_attributes(
            to=form.get("To"),
            num_segments=_int(form, "NumSegments"),
            keyword=keyword,
            opt_out_type=opt_out_type,
        ),
    )
    interactions = [message]
    # With Advanced Opt-Out, Twilio itself answers HELP with the service's help text.
    if keyword == "help" and opt_out_type is None:
        interactions.append(
            _create(
                channel=Channel.SMS,
                direction=Direction.OUTBOUND,
                kind=Kind.MESSAGE,
                received_at=received_at,
                identities=[customer],
                text=help_text,
                provider_message_id=f"{sid}:help-reply",
                source=source,
                attributes={"auto_reply": HELP_REPLY, "in_reply_to": str(message.event_id)},
            )
        )
    return interactions


def parse_message_status(form: Form, received_at: datetime) -> list[ChannelEvent]:
    """A status callback of a message the hub sent: its delivery state, never a new message.

    Twilio knows only its own message id, so the state goes out as ``UNRESOLVED_COMMAND``;
    the processors find the command the dispatcher recorded under that id."""
    _missing(form, "MessageSid", "MessageStatus", "To")
    status = form["MessageStatus"].strip().lower()
    state = MESSAGE_STATES.get(status)
    if state is None:
        raise ParseError(f"unknown MessageStatus {status!r}")
    code = form.get("ErrorCode") or None
    try:
        delivery = DeliveryStatus(
            command_id=UNRESOLVED_COMMAND,
            channel=Channel.SMS,
            state=state,
            occurred_at=received_at,
            provider_message_id=form["MessageSid"],
            error_code=code,
            error_message=describe_error(code, form.get("ErrorMessage")) if code else None,
        )
    except ValidationError as exc:
        raise ParseError(f"invalid status callback: {exc.errors()[0]['msg']}") from None
    return [delivery]


# --- voice -------------------------------------------------------------------------------


def _occurred(form: Form, received_at: datetime) -> datetime:
    """Twilio's own Timestamp of a call event (RFC 2822) when it sends one."""
    stamp = form.get("Timestamp")
    if stamp:
        try:
            parsed = parsedate_to_datetime(stamp)
        except (TypeError, ValueError):
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return received_at


def _call(form: Form, received_at: datetime, source: str, kind: Kind, **fields: Any) -> Interaction:
    """An interaction of a call: the customer is the caller, or the callee of our calls."""
    _missing(form, "CallSid")
    outbound = form.get("Direction", "inbound").startswith("outbound")
    _missing(form, "To" if outbound else "From")
    customer = _phone(form, "To" if outbound else "From")
    return _create(
        channel=Channel.VOICE,
        direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
        kind=kind,
        occurred_at=_occurred(form, received_at),
        received_at=received_at,
        identities=[customer],
        thread=ThreadRef(id=form["CallSid"]),
        source=source,
        **fields,
    )


def parse_call(
    form: Form, received_at: datetime, source: str, incoming: bool = False
) -> list[Interaction]:
    """An incoming call (answered with the voicemail TwiML), or a call status callback."""
    _missing(form, "CallSid", "CallStatus")
    sid, status = form["CallSid"], form["CallStatus"].strip().lower()
    if status not in CALL_STATUSES:
        raise ParseError(f"unknown CallStatus {status!r}")
    duration = _int(form, "CallDuration")
    subject = "Incoming call" if incoming else CALL_STATUSES[status]
    if status == "completed" and duration is not None:
        subject = f"Call ended after {duration_text(duration)}"
    return [
        _call(
            form,
            received_at,
            source,
            Kind.CALL,
            subject=subject,
            provider_message_id=f"{sid}:{status}",
            provider_ids=_provider_ids(form, call_sid="CallSid", account_sid="AccountSid"),
            attributes=_attributes(
                call_status=status,
                call_duration=duration,
                to=form.get("To"),
                sequence_number=_int(form, "SequenceNumber"),
            ),
        )
    ]


def parse_recording(form: Form, received_at: datetime, source: str) -> list[Interaction]:
    """The voicemail recording (the <Record> action); nothing when nothing was recorded."""
    if not form.get("RecordingSid") or not form.get("RecordingUrl"):
        return []
    sid = form["RecordingSid"]
    duration = _int(form, "RecordingDuration")
    subject = f"Voicemail ({duration_text(duration)})" if duration is not None else "Voicemail"
    recording = Attachment(
        name=f"{sid}.wav", content_type="audio/x-wav", url=form["RecordingUrl"], provider_id=sid
    )
    return [
        _call(
            form,
            received_at,
            source,
            Kind.VOICEMAIL,
            subject=subject,
            attachments=[recording],
            provider_message_id=sid,
            provider_ids=_provider_ids(form, call_sid="CallSid", recording_sid="RecordingSid"),
            attributes=_attributes(recording_duration=duration),
        )
    ]


def parse_transcription(form: Form, received_at: datetime, source: str) -> list[Interaction]:
    """The voicemail's transcription, as the text of a voicemail interaction."""
    _missing(form, "TranscriptionSid")
    sid = form["TranscriptionSid"]
    status = (form.get("TranscriptionStatus") or "completed").strip().lower()
    text = form.get("TranscriptionText") or None
    completed = status == "completed"
    return [
        _call(
            form,
            received_at,
            source,
            Kind.VOICEMAIL,
            subject="Voicemail transcription" if completed else "Voicemail transcription failed",
            text=text if completed else None,
            provider_message_id=sid,
            provider_ids=_provider_ids(
                form,
                call_sid="CallSid",
                recording_sid="RecordingSid",
                transcription_sid="TranscriptionSid",
            ),
            attributes=_attributes(transcription_status=status),
        )
    ]


# --- entry point -------------------------------------------------------------------------


def parse_request(
    request: InboundRequest, webhook: Webhook, received_at: datetime, source: str, help_text: str
) -> list[ChannelEvent]:
    """Parse a verified Twilio webhook into events; ParseError names what is wrong."""
    content_type = (request.header("content-type") or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        raise ParseError("JSON-bodied Twilio webhooks (Event Streams) are not handled")
    try:
        form = storable(request.form())
    except UnicodeDecodeError:
        raise ParseError("the form body is not UTF-8") from None
    if webhook is Webhook.SMS:
        return [*parse_sms(form, received_at, source, help_text)]
    if webhook is Webhook.MESSAGE_STATUS:
        return [*parse_message_status(form, received_at)]
    if webhook in (Webhook.VOICE, Webhook.CALL_STATUS):
        return [*parse_call(form, received_at, source, incoming=webhook is Webhook.VOICE)]
    if webhook is Webhook.RECORDING:
        return [*parse_recording(form, received_at, source)]
    return [*parse_transcription(form, received_at, source)]

"""The TwiML documents the adapter answers Twilio with (built with the twilio library)."""

from __future__ import annotations

from functools import cache

from twilio.twiml.messaging_response import MessagingResponse
from twilio.twiml.voice_response import VoiceResponse

CONTENT_TYPE = "text/xml; charset=utf-8"


def _xml(response: MessagingResponse | VoiceResponse) -> bytes:
    return str(response.to_xml()).encode("utf-8")


@cache
def empty() -> bytes:
    """``<Response/>``: received, nothing to say (built once: it never changes)."""
    return _xml(MessagingResponse())


def message(text: str) -> bytes:
    """Answer an SMS with one message."""
    response = MessagingResponse()
    response.message(text)
    return _xml(response)


def voicemail(
    greeting: str,
    language: str,
    recording_url: str,
    transcription_url: str,
    max_seconds: int,
) -> bytes:
    """Greet the caller, record a voicemail with transcription, then hang up.

    ``recording_url`` is the <Record> action: Twilio posts the recording there when the caller
    stops speaking, presses #, or hangs up (without an action it would request this document
    again and greet the caller in a loop).
    """
    response = VoiceResponse()
    response.say(greeting, language=language)
    response.record(
        action=recording_url,
        method="POST",
        max_length=max_seconds,
        timeout=5,
        finish_on_key="#",
        play_beep=True,
        transcribe=True,
        transcribe_callback=transcription_url,
    )
    response.say("We did not receive a message. Goodbye.", language=language)
    response.hangup()
    return _xml(response)


def goodbye(language: str) -> bytes:
    """After the recording: thank the caller and hang up."""
    response = VoiceResponse()
    response.say("Thank you, we received your message. Goodbye.", language=language)
    response.hangup()
    return _xml(response)

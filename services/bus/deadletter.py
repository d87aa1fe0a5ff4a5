"""Records that cannot be used go to the dead-letter topic with the reason in headers."""

from __future__ import annotations

from schemas.cloudevents import (
    ERROR_HEADER,
    ORIGIN_OFFSET_HEADER,
    ORIGIN_PARTITION_HEADER,
    ORIGIN_TOPIC_HEADER,
    ORIGINAL_TYPE_HEADER,
    STAGE_HEADER,
    Headers,
)
from schemas.sealing import EPHEMERAL_HEADER, KEY_ID_HEADER, SCHEME_HEADER, SEALED_TYPE_HEADER
from schemas.topics import DEADLETTER
from services.bus.records import Record

#: A sealed record's seal stays with it (a dead letter keeps the sealed bytes); the reasons a
#: record was dead-lettered before do not.
SEAL_HEADERS = frozenset({SCHEME_HEADER, KEY_ID_HEADER, EPHEMERAL_HEADER, SEALED_TYPE_HEADER})


def dead_letter(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Headers,
    error: str,
    stage: str,
) -> Record:
    """Return the dead-letter record of an unusable record, keeping its bytes and headers."""
    reason: Headers = [
        (ERROR_HEADER, error[:4000].encode("utf-8", "replace")),
        (STAGE_HEADER, stage.encode()),
        (ORIGIN_TOPIC_HEADER, topic.encode()),
        (ORIGIN_PARTITION_HEADER, str(partition).encode()),
        (ORIGIN_OFFSET_HEADER, str(offset).encode()),
    ]
    original_type = next((v for k, v in headers if k == "ce_type"), b"")
    kept = [
        (k, v)
        for k, v in headers
        if k != "ce_type" and (k in SEAL_HEADERS or not k.startswith("x-omnihub-"))
    ]
    kept += [("ce_type", DEADLETTER.ce_type.encode()), (ORIGINAL_TYPE_HEADER, original_type)]
    return Record(topic=DEADLETTER.name, key=key, value=value or b"", headers=kept + reason)

"""Hot-path JSON of routed events, spliced from parts already encoded: byte for byte what
pydantic's ``model_dump_json`` gives for the model (tests compare the two), without building
the model and encoding its interaction a second time."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

from pydantic import TypeAdapter

from schemas.events import SCHEMA_VERSION, AwareDatetime

_DATETIME: TypeAdapter[datetime] = TypeAdapter(AwareDatetime)

#: An interaction's own language key, unset. No field before it in ``Interaction`` can hold a
#: key of that name (identities and thread have fixed keys; subject and text are strings, whose
#: quotes JSON escapes), so its first occurrence is the interaction's own.
_NO_LANGUAGE = '"language":null,'


def datetime_json(value: datetime) -> str:
    """A timestamp as pydantic writes it in JSON (quoted ISO 8601, ``Z`` for UTC)."""
    return _DATETIME.dump_json(value).decode()


def with_language(interaction_json: str, language: str) -> str:
    """An interaction's JSON (from ``model_dump_json``) with its unset language set;
    ValueError if it already has one."""
    head, found, tail = interaction_json.partition(_NO_LANGUAGE)
    if not found:
        raise ValueError("the interaction already has a language")
    return head + _language_key(language) + tail


@lru_cache(maxsize=256)
def _language_key(language: str) -> str:
    """The ``"language":...,`` key of a language code (a few codes, used again and again)."""
    return f'"language":{json.dumps(language, ensure_ascii=False)},'


def routed_event_json(
    event_id: str,
    customer_id: str,
    routed_at_json: str,
    routing_json: str,
    interaction_json: str,
) -> str:
    """``RoutedEvent.model_dump_json()`` of these parts: the ids as ``str(uuid)``,
    ``routed_at_json`` from ``datetime_json``, the routing's and interaction's own
    ``model_dump_json``."""
    return (
        f'{{"schema_version":{SCHEMA_VERSION},"event_id":"{event_id}",'
        f'"customer_id":"{customer_id}","routed_at":{routed_at_json},'
        f'"routing":{routing_json},"interaction":{interaction_json}}}'
    )

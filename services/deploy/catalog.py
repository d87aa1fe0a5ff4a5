"""What the deployment files are made of: the variables of every settings class (the hub's
``Settings`` and each registered channel's), and the channel adapters that run as processes of
their own (``omnihub run channel <name>``)."""

from __future__ import annotations

import inspect
import json
import re
import typing
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from pathlib import PurePath
from typing import Any

import annotated_types
from pydantic import AliasChoices, SecretBytes, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from channels.base import Manifest, SessionAdapter, SourceAdapter, WebhookAdapter

#: Names that hold secrets whatever their type (besides fields typed SecretStr/SecretBytes).
SECRET_NAMES = re.compile(r"^DATABASE_URL$|_SECRET$|_TOKEN$|PASSWORD")
#: The first host port a channel process is published on by docker-compose.yml (the api: 8080).
FIRST_CHANNEL_PORT = 8081


@dataclass(frozen=True)
class Variable:
    """One environment variable: one field of one settings class."""

    name: str
    owner: type[BaseSettings]
    field: str
    info: FieldInfo
    #: Other names the field is also read from (``AliasChoices``).
    aliases: tuple[str, ...] = ()

    @property
    def required(self) -> bool:
        return self.info.is_required()

    @property
    def default(self) -> Any:
        return None if self.required else self.info.get_default(call_default_factory=True)

    @property
    def secret(self) -> bool:
        """Kept out of ConfigMaps: typed SecretStr, DATABASE_URL, *_SECRET, *_TOKEN, passwords."""
        return _holds_secret(self.info.annotation) or bool(SECRET_NAMES.search(self.name))

    @property
    def env_default(self) -> str:
        """The default as the environment spells it ("" when unset or required)."""
        return env_text(self.default)

    @property
    def description(self) -> str:
        """The field's description, with its bounds."""
        text = " ".join((self.info.description or "").split())
        if text and text[0].islower():
            text = text[0].upper() + text[1:]
        if text and not text.endswith((".", "!", "?")):
            text += "."
        bounds = self.bounds
        return f"{text} {bounds}".strip() if bounds else text

    @property
    def bounds(self) -> str:
        """The field's constraints in words, e.g. "At least 1, at most 20."."""
        words = []
        for item in self.info.metadata:
            for kind, attr, phrase in (
                (annotated_types.Ge, "ge", "at least"),
                (annotated_types.Gt, "gt", "more than"),
                (annotated_types.Le, "le", "at most"),
                (annotated_types.Lt, "lt", "less than"),
            ):
                if isinstance(item, kind):
                    words.append(f"{phrase} {getattr(item, attr)}")
            if isinstance(item, annotated_types.MaxLen):
                words.append(f"at most {item.max_length} characters")
            if isinstance(item, annotated_types.MinLen):
                words.append(f"at least {item.min_length} characters")
        if not words:
            return ""
        text = ", ".join(words)
        return text[0].upper() + text[1:] + "."


@dataclass(frozen=True)
class Section:
    """One settings class and its variables, in field order."""

    cls: type[BaseSettings]
    #: Who reads it: "the hub", "channel twilio".
    reader: str
    variables: tuple[Variable, ...]

    @property
    def title(self) -> str:
        return self.cls.__name__

    @property
    def source(self) -> str:
        """The file that defines the class, relative to the repository root."""
        return str(PurePath(*self.cls.__module__.split("."))) + ".py"

    @property
    def summary(self) -> str:
        """The first paragraph of the class's docstring, on one line."""
        doc = inspect.cleandoc(self.cls.__doc__ or "")
        return " ".join(doc.split("\n\n")[0].split())


@dataclass(frozen=True)
class Process:
    """A channel adapter that runs alone: one compose service, one Kubernetes Deployment."""

    manifest: Manifest
    #: Its host port in docker-compose.yml.
    port: int

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def service(self) -> str:
        """Its compose service and Kubernetes container/component name (DNS-1123)."""
        return "channel-" + self.name.lower().replace("_", "-")

    @property
    def port_variable(self) -> str:
        """The docker-compose.yml variable of its host port."""
        return f"OMNIHUB_CHANNEL_{self.name.upper().replace('-', '_')}_PORT"

    @property
    def replicas(self) -> tuple[int, str]:
        """How many replicas its Deployment starts with, and why (from the adapter's shape)."""
        adapter = self.manifest.adapter
        shape = adapter if isinstance(adapter, type) else None
        if shape and issubclass(shape, SourceAdapter):
            return 1, "it runs a source (a server or poller), which every replica would run again"
        if shape and issubclass(shape, SessionAdapter):
            return 2, "each replica holds its own sessions; replies reach all of them: scale freely"
        if shape and issubclass(shape, WebhookAdapter):
            return 2, "webhooks are stateless: scale freely"
        return 1, "its adapter's shape is unknown: scale it once it is known to be stateless"


@dataclass(frozen=True)
class Sources:
    """What is rendered: the hub's settings classes and the channel manifests."""

    hub_settings: tuple[type[BaseSettings], ...]
    manifests: tuple[Manifest, ...]

    @classmethod
    def registered(cls) -> Sources:
        """The hub's ``Settings`` and every channel registered through its entry point."""
        from channels.registry import manifests
        from services.config import Settings

        return cls(hub_settings=(Settings,), manifests=tuple(manifests().values()))

    def with_extra(
        self,
        settings: tuple[type[BaseSettings], ...] = (),
        manifests: tuple[Manifest, ...] = (),
    ) -> Sources:
        """These sources plus more (tests: a new settings class or channel)."""
        return Sources(self.hub_settings + settings, self.manifests + manifests)

    @cached_property
    def sections(self) -> tuple[Section, ...]:
        """Each settings class once: the hub's, then the channels' (in manifest order)."""
        readers: dict[type[BaseSettings], list[str]] = {cls: [] for cls in self.hub_settings}
        for manifest in self.manifests:
            for cls in manifest.settings:
                readers.setdefault(cls, []).append(manifest.name)
        return tuple(
            Section(
                cls,
                "the hub" if cls in self.hub_settings else _channels_phrase(names),
                tuple(_variables(cls)),
            )
            for cls, names in readers.items()
        )

    @cached_property
    def variables(self) -> dict[str, Variable]:
        """Every variable by name, the first class that reads it winning."""
        found: dict[str, Variable] = {}
        for section in self.sections:
            for variable in section.variables:
                found.setdefault(variable.name, variable)
        return found

    def home(self, variable: Variable) -> Variable:
        """The variable of that name the files list (the first class reading it)."""
        return self.variables[variable.name]

    @cached_property
    def processes(self) -> tuple[Process, ...]:
        """Adapters that need a process of their own: neither served by the api
        (``with_hub_api``) nor send-only (the dispatcher sends)."""
        own = [m for m in self.manifests if not m.with_hub_api and not m.send_only]
        return tuple(
            Process(m, FIRST_CHANNEL_PORT + i) for i, m in enumerate(sorted(own, key=_name))
        )

    @property
    def api_channels(self) -> str:
        """OMNIHUB_CHANNELS of the api: the adapters that have no process of their own."""
        alone = {p.name for p in self.processes}
        names = sorted(m.name for m in self.manifests if m.name not in alone)
        if self.processes and not names:
            raise ValueError(
                "every channel adapter runs alone, so OMNIHUB_CHANNELS cannot keep the api from "
                "serving them too (empty means all)"
            )
        return ",".join(names)


def _name(manifest: Manifest) -> str:
    return manifest.name


def _channels_phrase(names: list[str]) -> str:
    return ("channel " if len(names) == 1 else "channels ") + ", ".join(names)


def _variables(cls: type[BaseSettings]) -> list[Variable]:
    prefix = str(cls.model_config.get("env_prefix") or "")
    upper = not cls.model_config.get("case_sensitive", False)
    found = []
    for field, info in cls.model_fields.items():
        names = _env_names(field, info, prefix)
        if not names:
            continue
        if upper:
            names = [n.upper() for n in names]
        found.append(Variable(names[0], cls, field, info, tuple(names[1:])))
    return found


def _env_names(field: str, info: FieldInfo, prefix: str) -> list[str]:
    """The names pydantic-settings reads a field from (aliases ignore the env prefix)."""
    alias = info.validation_alias
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str)]
    if info.alias:
        return [info.alias]
    return [prefix + field]


def _holds_secret(annotation: Any) -> bool:
    if annotation in (SecretStr, SecretBytes):
        return True
    return any(_holds_secret(arg) for arg in typing.get_args(annotation))


def env_text(value: Any) -> str:
    """A value as an environment variable holds it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, SecretStr | SecretBytes):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset | dict):
        return json.dumps(list(value) if not isinstance(value, dict) else value)
    return str(value)

"""docs/configuration-reference.md: one table per settings class (variable, default,
description), then the variables only docker-compose.yml reads."""

from __future__ import annotations

from services.deploy.catalog import Sources, Variable
from services.deploy.compose import compose_variables
from services.deploy.production import PRODUCTION, summary
from services.deploy.text import GENERATED

PATH = "docs/configuration-reference.md"


def render(sources: Sources) -> str:
    """The whole reference."""
    lines = [
        "# Configuration reference",
        "",
        f"<!-- {GENERATED} -->",
        "",
        "Every environment variable omnihub reads, one table per settings class: the hub's "
        "(`services/config.py`) and each registered channel adapter's (its manifest's "
        "`settings`). A variable's name is its field's alias (or the class's prefix and the "
        "field's name), its description the field's. Secrets (fields typed `SecretStr`, "
        "`DATABASE_URL`, `*_SECRET`, `*_TOKEN`, passwords) go into the Kubernetes Secret "
        "`omnihub-secrets`, never into the `omnihub-config` ConfigMap. **Deployments** names "
        "where `docker-compose.yml`, `deploy/k8s/` or the image set a value other than the "
        "default, and why (`services/deploy/production.py`).",
        "",
        "The same variables are in `deploy/omnihub.env.example`, `docker-compose.yml` "
        "(`x-omnihub-env`) and `deploy/k8s/config.yaml`; `omnihub deploy render` writes them "
        "all.",
    ]
    for section in sources.sections:
        lines += [
            "",
            f"## {section.title}",
            "",
            f"`{section.source}`, read by {section.reader}. {section.summary}".rstrip(),
            "",
            "| variable | default | description |",
            "| --- | --- | --- |",
        ]
        lines += [_row(sources, variable) for variable in section.variables]
    lines += [
        "",
        "## docker-compose.yml only",
        "",
        "Read by `docker-compose.yml` itself (interpolation), not by omnihub; one host port per "
        "channel adapter that runs alone.",
        "",
        "| variable | default | description |",
        "| --- | --- | --- |",
    ]
    for own in compose_variables(sources):
        default = f"`{own.default}`" if own.default else "required"
        lines.append(f"| `{own.name}` | {default} | {_cell(own.description)} |")
    return "\n".join(lines) + "\n"


def _row(sources: Sources, variable: Variable) -> str:
    parts = [_cell(variable.description)] if variable.description else []
    if variable.aliases:
        parts.append("Also read as " + ", ".join(f"`{a}`" for a in variable.aliases) + ".")
    if variable.secret:
        parts.append("**Secret.**")
    others = [
        f"`{s.title}`"
        for s in sources.sections
        if s.cls is not variable.owner and any(v.name == variable.name for v in s.variables)
    ]
    if others:
        parts.append(f"Also read by {', '.join(others)}.")
    production = PRODUCTION.get(variable.name)
    if production is not None:
        parts.append(f"**Deployments:** {_cell(summary(production, secret=variable.secret))}")
    return f"| `{variable.name}` | {_default(variable)} | {' '.join(parts)} |"


def _default(variable: Variable) -> str:
    if variable.required:
        return "required"
    if variable.default is None:
        return "unset"
    return f"`{_code(variable.env_default)}`" if variable.env_default else '`""`'


def _cell(text: str) -> str:
    """Text for a table cell: ``|`` escaped, ``<`` and ``>`` outside code spans as entities."""
    pieces = text.replace("|", "\\|").split("`")
    for i in range(0, len(pieces), 2):
        pieces[i] = pieces[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(pieces)


def _code(text: str) -> str:
    return text.replace("|", "\\|").replace("`", "'")

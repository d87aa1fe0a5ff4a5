"""deploy/omnihub.env.example: every variable, described, commented out at its default."""

from __future__ import annotations

from services.deploy.catalog import Sources
from services.deploy.compose import compose_variables
from services.deploy.production import PRODUCTION, summary
from services.deploy.text import GENERATED, comment, section_rule

HEADER = """\
# omnihub environment: every variable omnihub reads; commented-out lines show the default.
# Copy it outside the repository before putting secrets in it.
#
# docker compose --env-file <copy> uses it for interpolation and passes every omnihub variable
# set in it on to the containers (docker-compose.yml's x-omnihub-env names them all), except
# those the compose file or the image set themselves (said below). On Kubernetes, non-secret
# values go into the omnihub-config ConfigMap (deploy/k8s/config.yaml), secrets into the
# omnihub-secrets Secret. docs/configuration-reference.md describes every variable."""


def render(sources: Sources) -> str:
    """The whole env example."""
    lines = [*comment(GENERATED), HEADER, "", section_rule("docker-compose.yml only")]
    for own in compose_variables(sources):
        lines += comment(own.description)
        lines.append(f"{own.name}={own.default}" if own.fill else f"# {own.name}={own.default}")
    for section in sources.sections:
        lines += ["", section_rule(f"{section.title} ({section.source})")]
        lines += comment(f"Read by {section.reader}. {section.summary}")
        for variable in section.variables:
            home = sources.home(variable)
            if home is not variable:
                lines += comment(
                    f"{variable.name}, set above (under {home.owner.__name__}), is read here "
                    f"too. {variable.description}"
                )
                continue
            if variable.description:
                lines += comment(variable.description)
            production = PRODUCTION.get(variable.name)
            if production is not None:
                lines += comment(summary(production, secret=variable.secret))
            if production is not None and production.example is not None:
                lines.append(f"# {variable.name}={production.example}")
            elif variable.secret or variable.required or (production and production.fill):
                lines.append(f"{variable.name}=")
            else:
                lines.append(f"# {variable.name}={variable.env_default}")
    return "\n".join(lines) + "\n"

"""docker-compose.yml: Kafka, PostgreSQL, migrate, api, processors, dispatcher, and one service
per channel adapter that runs alone; the shared environment block lists every variable."""

# The templates keep the hand-written files' long lines (commands, probes) as they were.
# ruff: noqa: E501

from __future__ import annotations

from dataclasses import dataclass

from channels.base import Listener
from services.deploy.catalog import Process, Sources
from services.deploy.production import PRODUCTION
from services.deploy.text import GENERATED, comment, quoted


@dataclass(frozen=True)
class ComposeVariable:
    """A variable docker-compose.yml itself reads (interpolation), not omnihub."""

    name: str
    default: str
    description: str
    #: An uncommented ``NAME=`` line in the env example: to be filled in.
    fill: bool = False


def compose_variables(sources: Sources) -> list[ComposeVariable]:
    """The variables only docker-compose.yml reads."""
    found = [
        ComposeVariable(
            "POSTGRES_PASSWORD",
            "",
            "Password of the `omnihub` PostgreSQL user (URL-safe characters: it is put into "
            "DATABASE_URL).",
            fill=True,
        ),
        ComposeVariable("OMNIHUB_API_PORT", "8080", "Host port of the API."),
    ]
    found += [
        ComposeVariable(
            p.port_variable,
            str(p.port),
            f"Host port of the {p.name} channel process (`omnihub run channel {p.name}`): route "
            f"<OMNIHUB_PUBLIC_URL>/channels/{p.name}/ to it.",
        )
        for p in sources.processes
    ]
    found += [
        ComposeVariable(
            listener_variable(p, listener),
            str(listener.port),
            f"Host port of the {p.name} channel's {listener.name} server.",
        )
        for p in sources.processes
        for listener in p.manifest.listeners
    ]
    clash = sorted({v.name for v in found} & set(sources.variables))
    if clash:
        raise ValueError(f"docker-compose.yml's own variables clash with settings: {clash}")
    return found


HEADER = """\
# omnihub, production-like: Apache Kafka (KRaft, one node), PostgreSQL 16, and the components,
# each its own container running `omnihub run <component>`, one per channel adapter that runs
# alone (`omnihub run channel <name>`).
#
# Docker is not available on the development machines: this file is for deployment and is not
# exercised by `make test`. For development use `make up` (embedded Tansu and PostgreSQL).
#
#   cp deploy/omnihub.env.example /etc/omnihub/omnihub.env    # keep secrets out of the repo
#   $EDITOR /etc/omnihub/omnihub.env                          # set POSTGRES_PASSWORD at least
#   docker compose --env-file /etc/omnihub/omnihub.env up -d --build
#   docker compose --env-file /etc/omnihub/omnihub.env up -d --scale processors=4
#   docker compose --env-file /etc/omnihub/omnihub.env exec api omnihub token create --role integration
#
# See deploy/README.md for scaling, probes and metrics.

x-omnihub-image: &omnihub-image
  build:
    context: .
    dockerfile: deploy/Dockerfile
  image: omnihub:0.1.0
  # The files that arrive with messages (OMNIHUB_BLOB_DIR's default under the data directory):
  # one volume for every process, since the processors store what the channels stage and the
  # api serves them (or set OMNIHUB_BLOB_S3_URL).
  volumes:
    - omnihub-blobs:/var/lib/omnihub/blobs

# Every variable omnihub reads (docs/configuration-reference.md). A name without a value is
# passed on from the shell or the --env-file where it is set there, and left unset (its default
# applies) where it is not; the values given are the production choices, each with its reason.
x-omnihub-env: &omnihub-env
"""

WORKERS = """\

# Workers have no HTTP endpoint (faust's web server is disabled). A worker keeps the marker
# $OMNIHUB_DATA_DIR/ready/<faust app id>.<pid> from its first completed rebalance (it joined its
# consumer group) until it shuts down cleanly; the check looks for it. A worker that exits is
# restarted by Docker.
x-processors-healthcheck: &processors-healthcheck
  test:
    - CMD
    - python
    - -c
    - "import glob, sys; sys.exit(not glob.glob('/var/lib/omnihub/ready/omnihub-processors.*'))"
  interval: 15s
  timeout: 5s
  retries: 3
  start_period: 60s

x-dispatcher-healthcheck: &dispatcher-healthcheck
  test:
    - CMD
    - python
    - -c
    - "import glob, sys; sys.exit(not glob.glob('/var/lib/omnihub/ready/omnihub-dispatcher.*'))"
  interval: 15s
  timeout: 5s
  retries: 3
  start_period: 60s

# The web processes (the api and each channel adapter's) answer /readyz with 503 until they can work.
x-readyz-healthcheck: &readyz-healthcheck
  test:
    - CMD
    - python
    - -c
    - "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=5)"
  interval: 15s
  timeout: 10s
  retries: 3
  start_period: 20s

x-after-migrate: &after-migrate
  migrate:
    condition: service_completed_successfully
  kafka:
    condition: service_healthy
  postgres:
    condition: service_healthy

services:
  kafka:
    # aiokafka's support for Kafka 4.x is still being completed upstream; stay on 3.9.
    image: apache/kafka:3.9.1
    restart: unless-stopped
    environment:
      # KRaft needs a cluster id (22 characters, base64 of 16 bytes); any fixed value will do.
      CLUSTER_ID: b21uaWh1Yi1rYWZrYS0wMQ
      KAFKA_NODE_ID: 1
      KAFKA_PROCESS_ROLES: broker,controller
      KAFKA_LISTENERS: PLAINTEXT://:9092,CONTROLLER://:9093
      KAFKA_ADVERTISED_LISTENERS: PLAINTEXT://kafka:9092
      KAFKA_CONTROLLER_LISTENER_NAMES: CONTROLLER
      KAFKA_LISTENER_SECURITY_PROTOCOL_MAP: CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
      KAFKA_CONTROLLER_QUORUM_VOTERS: 1@kafka:9093
      KAFKA_LOG_DIRS: /var/lib/kafka/data
      # One node: internal topics cannot have more replicas than brokers.
      KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR: 1
      KAFKA_TRANSACTION_STATE_LOG_MIN_ISR: 1
      KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS: 0
      # Topics come from `omnihub migrate` (schemas/topics.py), with their partition counts.
      KAFKA_AUTO_CREATE_TOPICS_ENABLE: "false"
    volumes:
      - kafka-data:/var/lib/kafka/data
    healthcheck:
      test: ["CMD-SHELL", "/opt/kafka/bin/kafka-topics.sh --bootstrap-server localhost:9092 --list >/dev/null"]
      interval: 10s
      timeout: 20s
      retries: 10
      start_period: 20s

  postgres:
    image: postgres:16
    restart: unless-stopped
    environment:
      POSTGRES_DB: omnihub
      POSTGRES_USER: omnihub
      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (see deploy/omnihub.env.example)}
    volumes:
      - postgres-data:/var/lib/postgresql/data
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U omnihub -d omnihub"]
      interval: 5s
      timeout: 5s
      retries: 20

  # One-shot: applies the database migrations and creates the topics, then exits 0.
  migrate:
    <<: *omnihub-image
    command: ["migrate"]
    environment: *omnihub-env
    restart: "no"
    depends_on:
      kafka:
        condition: service_healthy
      postgres:
        condition: service_healthy

  api:
    <<: *omnihub-image
    command: ["run", "api"]
    restart: unless-stopped
    environment:
      <<: *omnihub-env
      OMNIHUB_HTTP_HOST: 0.0.0.0
      OMNIHUB_HTTP_PORT: 8080
"""

API_REST = """\
    ports:
      - "${OMNIHUB_API_PORT:-8080}:8080"
    depends_on: *after-migrate
    # Ready = PostgreSQL answers and the producer reaches Kafka (503 otherwise).
    healthcheck: *readyz-healthcheck

  processors:
    <<: *omnihub-image
    command: ["run", "processors"]
    restart: unless-stopped
    environment: *omnihub-env
    depends_on: *after-migrate
    healthcheck: *processors-healthcheck
    stop_grace_period: 30s

  dispatcher:
    <<: *omnihub-image
    command: ["run", "dispatcher"]
    restart: unless-stopped
    environment: *omnihub-env
    depends_on: *after-migrate
    healthcheck: *dispatcher-healthcheck
    stop_grace_period: 60s
"""

CHANNEL = """\

  # {title}
  # `omnihub run channel {name}` serves this adapter alone (its routes under /channels/{name}/,
  # /healthz, /readyz, /metrics): it receives with Kafka alone, and uses PostgreSQL where it keeps
  # something (client sessions' replies and conversation log, IMAP's place). Route
  # <OMNIHUB_PUBLIC_URL>/channels/{name}/ to its port. It scales on its own, but more than one
  # replica needs a proxy in place of its fixed host port.
  {service}:
    <<: *omnihub-image
    command: ["run", "channel", "{name}"]
    restart: unless-stopped
    environment:
      <<: *omnihub-env
      OMNIHUB_HTTP_HOST: 0.0.0.0
      OMNIHUB_HTTP_PORT: 8080{listener_env}
    ports:
      - "${{{port_variable}:-{port}}}:8080"{listener_ports}
    depends_on: *after-migrate
    # Ready = the producer reaches Kafka (503 otherwise); the body reports the adapter's health.
    healthcheck: *readyz-healthcheck
"""

FOOTER = """
volumes:
  kafka-data:
  postgres-data:
  omnihub-blobs:
"""


def render(sources: Sources) -> str:
    """The whole docker-compose.yml."""
    compose_variables(sources)  # fails on a clash of names
    api_env = [
        *comment(
            "The adapters without a process of their own; the channel-* services serve the others.",
            indent="      ",
        ),
        f"      OMNIHUB_CHANNELS: {quoted(sources.api_channels)}",
    ]
    lines = [
        *comment(GENERATED),
        HEADER.rstrip("\n"),
        *shared_environment(sources),
        WORKERS.rstrip("\n"),
        *api_env,
    ]
    return "\n".join(lines) + "\n" + API_REST + "".join(map(channel, sources.processes)) + FOOTER


def channel(process: Process) -> str:
    """The compose service of one channel process."""
    title = " ".join(process.manifest.title.split())
    return CHANNEL.format(
        title=f"{title}.",
        name=process.name,
        service=process.service,
        port_variable=process.port_variable,
        port=process.port,
        listener_env="".join(
            f"\n      {item.host_setting}: 0.0.0.0\n      {item.port_setting}: {item.port}"
            for item in process.manifest.listeners
        ),
        listener_ports="".join(
            f'\n      - "${{{listener_variable(process, item)}:-{item.port}}}:{item.port}"'
            for item in process.manifest.listeners
        ),
    )


def listener_variable(process: Process, listener: Listener) -> str:
    """The docker-compose.yml variable of a listener's host port."""
    return f"{process.port_variable[: -len('_PORT')]}_{listener.name.upper()}_PORT"


def shared_environment(sources: Sources) -> list[str]:
    """The body of x-omnihub-env: every variable, once, by settings class."""
    indent = "  "
    lines: list[str] = []
    for section in sources.sections:
        lines += comment(
            f"--- {section.title} ({section.source}), read by {section.reader}", indent=indent
        )
        for variable in section.variables:
            if sources.home(variable) is not variable:
                continue
            production = PRODUCTION.get(variable.name)
            if production is None:
                lines.append(f"{indent}{variable.name}:")
            elif production.image is not None:
                lines += comment(
                    f"{variable.name}: set by the image ({production.image}): {production.reason}.",
                    indent=indent,
                )
            elif production.per_process:
                lines += comment(
                    f"{variable.name}: set per service: {production.reason}.",
                    indent=indent,
                )
            elif production.compose is not None:
                value = production.compose
                if not production.compose_fixed:
                    value = f"${{{variable.name}:-{value}}}"
                lines += comment(_sentence(production.reason), indent=indent)
                lines.append(f"{indent}{variable.name}: {quoted(value)}")
            else:
                lines.append(f"{indent}{variable.name}:")
    return lines


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + ("" if text.endswith(".") else ".")

"""Where a deployment sets a variable differently from its default, and why: the one place
for production choices. Every other variable is left at the default its field declares."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Production:
    """How the deployment files set one variable."""

    #: Why (shown beside the value in every generated file).
    reason: str
    #: The value of docker-compose.yml's shared environment block.
    compose: str | None = None
    #: The compose value is fixed; otherwise it is ``${NAME:-value}``, overridable in the
    #: --env-file.
    compose_fixed: bool = False
    #: The value of the omnihub-config ConfigMap (or a key of omnihub-secrets, for a secret).
    configmap: str | None = None
    #: Set by the image (deploy/Dockerfile's ENV): no deployment file passes it on.
    image: str | None = None
    #: Set by each compose service or Deployment for itself, never shared.
    per_process: bool = False
    #: The sample value the env example shows (commented out) instead of the default.
    example: str | None = None
    #: An uncommented ``NAME=`` line in the env example: to be filled in.
    fill: bool = False


PRODUCTION: dict[str, Production] = {
    "KAFKA_BOOTSTRAP_SERVERS": Production(
        "the compose file runs its own kafka service; on Kubernetes, list your brokers",
        compose="kafka:9092",
        compose_fixed=True,
        configmap="kafka-0.kafka:9092,kafka-1.kafka:9092,kafka-2.kafka:9092",
        example="kafka-0.kafka:9092,kafka-1.kafka:9092",
    ),
    "KAFKA_ENABLE_IDEMPOTENCE": Production(
        "Apache Kafka has an idempotent producer (Tansu, used by `make up`, does not: keep false "
        "there)",
        compose="true",
        compose_fixed=True,
        configmap="true",
    ),
    "KAFKA_REPLICATION_FACTOR": Production(
        "the ConfigMap's cluster has three brokers, and a topic with one replica is lost with "
        "its broker (the compose file runs one broker: 1, the default)",
        configmap="3",
    ),
    "DATABASE_URL": Production(
        "the compose file runs its own postgres service, and POSTGRES_PASSWORD must be URL-safe "
        "there (or percent-encoded)",
        compose=(
            "postgresql://omnihub:${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (see "
            "deploy/omnihub.env.example)}@postgres:5432/omnihub"
        ),
        compose_fixed=True,
        configmap="postgresql://omnihub:<password>@<host>:5432/omnihub",
        example="postgresql://omnihub:<password>@postgres:5432/omnihub",
    ),
    "OMNIHUB_BLOB_S3_URL": Production(
        "pods share no disk, and the files that arrive with messages are written by the "
        "processors and the channels and served by the api: keep them in a bucket (the compose "
        "file mounts one volume in every service instead)",
        configmap="s3://omnihub-files/blobs",
        example="s3://omnihub-files/blobs",
    ),
    "OMNIHUB_FETCH_MAX_WAIT_MS": Production(
        "Apache Kafka answers a waiting fetch as soon as data arrives, so a longer wait than the "
        "default (chosen for Tansu, which answers only at the deadline) costs no latency and "
        "saves idle fetches",
        compose="500",
        configmap="500",
    ),
    "OMNIHUB_FETCH_MIN_BYTES": Production(
        "with a 500 ms fetch wait, a fetch waiting for the default 16 KB (chosen for Tansu) would "
        "hold a quiet hub's events up to 500 ms: answer as soon as anything arrives",
        compose="1",
        configmap="1",
    ),
    "OMNIHUB_API_DOCS": Production(
        "the OpenAPI document and its pages (`/openapi.json`, `/docs`, `/redoc`) map every "
        "route and model of the hub, unauthenticated, to anyone reaching the port: "
        "off, as by default (`omnihub up` turns it on for development); turn it on only where "
        "the API is not public",
        compose="false",
        configmap="false",
    ),
    "OMNIHUB_METRICS_PORT": Production(
        "the workers (processors, dispatcher) serve their Prometheus metrics there for "
        "deploy/grafana/omnihub.json and deploy/prometheus/omnihub-alerts.yaml (the HTTP "
        "processes serve theirs on /metrics and ignore it)",
        compose="9100",
        configmap="9100",
    ),
    "OMNIHUB_DATA_DIR": Production(
        "the image's writable data directory (the ready-marker probes look there)",
        image="/var/lib/omnihub",
    ),
    "OMNIHUB_HTTP_HOST": Production(
        "the container's port is reached from outside", image="0.0.0.0"
    ),
    "OMNIHUB_HTTP_PORT": Production(
        "the port every HTTP process listens on in its container", image="8080"
    ),
    "OMNIHUB_CHANNELS": Production(
        "the api serves only the adapters without a process of their own; `omnihub run channel "
        "<name>` serves its adapter alone whatever it says",
        per_process=True,
    ),
    "OMNIHUB_API_CALLBACK_URL": Production(
        "where replies to API-channel customers are POSTed: set it (read by the dispatcher to "
        "send, by the api for /readyz)",
        configmap="",
        fill=True,
    ),
    "OMNIHUB_API_CALLBACK_SECRET": Production(
        "the HMAC key of the reply callbacks: set it with the URL", fill=True
    ),
    "EMAIL_SIGNING_KEY": Production(
        "every process must sign and check conversations with the same key (the dispatcher "
        "signs what it sends, the processors check what comes back): unset, each container "
        "would make its own key file",
        compose="${EMAIL_SIGNING_KEY:?set EMAIL_SIGNING_KEY, 32+ characters (see "
        "deploy/omnihub.env.example)}",
        compose_fixed=True,
        fill=True,
    ),
    "WEBCHAT_VISITOR_KEY": Production(
        "every web process must check the visitor ids the others issued (a widget reconnects "
        "to any replica): unset, each container would make its own key file",
        compose="${WEBCHAT_VISITOR_KEY:?set WEBCHAT_VISITOR_KEY, 32+ characters (see "
        "deploy/omnihub.env.example)}",
        compose_fixed=True,
        fill=True,
    ),
}


def summary(production: Production, *, secret: bool = False) -> str:
    """What the deployment files do with a variable and why, as one sentence."""
    pieces = []
    if production.image is not None:
        pieces.append(f"the image sets `{production.image}`")
    compose, configmap = production.compose, production.configmap
    if compose is not None and compose == configmap and not secret:
        pieces.append(f"the compose file and the ConfigMap set `{compose}`")
    else:
        if compose is not None:
            pieces.append(f"the compose file sets `{compose}`")
        if configmap is not None and secret:
            pieces.append(f"the Secret omnihub-secrets holds it (`{configmap}`)")
        elif configmap == "":
            pieces.append("the ConfigMap has it, empty")
        elif configmap is not None:
            pieces.append(f"the ConfigMap sets `{configmap}`")
    if production.per_process:
        pieces.append("each process sets its own")
    text = f"{'; '.join(pieces)}: {production.reason}" if pieces else production.reason
    return text[0].upper() + text[1:] + "."

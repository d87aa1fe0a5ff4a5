"""Runtime settings from the environment (pydantic-settings)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

RUNTIME_FILE = "runtime.json"


class Settings(BaseSettings):
    """Everything omnihub reads from its environment; see docs/configuration.md."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        alias="KAFKA_BOOTSTRAP_SERVERS",
        description=(
            "Kafka `host:port[,host:port]`. Unset: `omnihub up` starts the embedded Tansu; other "
            "commands take it from a running `omnihub up` (`<data dir>/runtime.json`)"
        ),
    )
    kafka_replication_factor: int = Field(
        default=1,
        alias="KAFKA_REPLICATION_FACTOR",
        description=(
            "Replication of the topics `omnihub migrate` and `omnihub topics --create` create"
        ),
    )
    kafka_idempotence: bool = Field(
        default=False,
        alias="KAFKA_ENABLE_IDEMPOTENCE",
        description=(
            "Idempotent producer (aiokafka `enable_idempotence`); Tansu has none, Apache Kafka has"
        ),
    )
    database_url: str | None = Field(
        default=None,
        alias="DATABASE_URL",
        description=(
            "PostgreSQL URL. Unset: `omnihub up` starts the embedded PostgreSQL; other commands "
            "take it from a running `omnihub up`"
        ),
    )
    data_dir: Path = Field(
        default=Path(".omnihub"),
        alias="OMNIHUB_DATA_DIR",
        description=(
            "Local state: `runtime.json`, the embedded servers' data and logs, faust's data,"
            " and the workers' ready markers (`ready/<app id>.<pid>`)"
        ),
    )
    broker_storage: Literal["durable", "memory"] = Field(
        default="durable",
        alias="OMNIHUB_BROKER_STORAGE",
        description=(
            "Storage of the embedded Tansu `omnihub up` starts: `durable` keeps topics, records"
            " and consumer offsets in `<data dir>/broker` (an embedded S3 store) across crashes"
            " and restarts; `memory` loses them when the broker stops"
        ),
    )
    http_host: str = Field(
        default="127.0.0.1",
        alias="OMNIHUB_HTTP_HOST",
        description="Address the HTTP server (api, channel processes) listens on",
    )
    http_port: int = Field(
        default=8080,
        alias="OMNIHUB_HTTP_PORT",
        description="Port the HTTP server (api, channel processes) listens on",
    )
    api_docs: bool = Field(
        default=False,
        alias="OMNIHUB_API_DOCS",
        description=(
            "Serve the OpenAPI document and its pages (`/openapi.json`, `/docs`, `/redoc`); "
            "`omnihub up` turns it on, production leaves it off"
        ),
    )
    metrics_port: int | None = Field(
        default=None, alias="OMNIHUB_METRICS_PORT", description="workers: Prometheus port"
    )
    identity_rules: str | None = Field(
        default=None, alias="OMNIHUB_IDENTITY_RULES", description="YAML file of identity rules"
    )
    routing_rules: str | None = Field(
        default=None, alias="OMNIHUB_ROUTING_RULES", description="YAML ruleset; unset: shipped"
    )
    public_url: str | None = Field(
        default=None,
        alias="OMNIHUB_PUBLIC_URL",
        description="The hub's base URL as providers call it (behind a proxy: the proxy's address)",
    )
    log_level: str = Field(
        default="INFO", alias="OMNIHUB_LOG_LEVEL", description="Python log level"
    )
    publish_timeout: float = Field(
        default=10.0,
        alias="OMNIHUB_PUBLISH_TIMEOUT",
        description="Seconds to wait for the broker's acks=all before answering 503",
    )
    publish_linger_ms: int = Field(
        default=20,
        ge=0,
        alias="OMNIHUB_PUBLISH_LINGER_MS",
        description="Longest a web process holds a record to send it with others', ms",
    )
    publish_batch_records: int = Field(
        default=32,
        ge=1,
        alias="OMNIHUB_PUBLISH_BATCH_RECORDS",
        description=(
            "How many held records a web process sends at once without waiting out the linger"
        ),
    )
    batch_size: int = Field(
        default=1000, alias="OMNIHUB_BATCH_SIZE", description="Events per processors batch"
    )
    raw_record_days: int = Field(
        default=7,
        ge=1,
        le=365,
        alias="OMNIHUB_RAW_RECORD_DAYS",
        description=(
            "Days a raw record (interactions, dead letters) stays readable after its UTC day:"
            " then its period key is deleted, and with it what an erased customer left there"
        ),
    )
    keep_deleted_text: bool = Field(
        default=False,
        alias="OMNIHUB_KEEP_DELETED_TEXT",
        description=(
            "processors: keep the text of a message its sender deleted (unsent), for admins"
            " only; off: the text is gone from the hub once the deletion arrives"
        ),
    )
    unseen_reply_seconds: float = Field(
        default=120.0,
        ge=0,
        le=86400,
        alias="OMNIHUB_UNSEEN_REPLY_SECONDS",
        description=(
            "dispatcher: seconds after which a reply on a session channel (web chat) the"
            " customer has not read goes to the address they left, by email or SMS; 0: never"
        ),
    )
    batch_wait: float = Field(
        default=0.02,
        alias="OMNIHUB_BATCH_WAIT",
        description="Seconds an idle agent waits to fill a batch",
    )
    fetch_max_wait_ms: int = Field(
        default=50,
        alias="OMNIHUB_FETCH_MAX_WAIT_MS",
        description=(
            "Longest a faust worker's fetch waits for data, ms (faust's own 1500 is too long on "
            "Tansu, which answers a waiting fetch only at the deadline)"
        ),
    )
    fetch_min_bytes: int = Field(
        default=16384,
        ge=1,
        alias="OMNIHUB_FETCH_MIN_BYTES",
        description=(
            "How much a faust worker's fetch waits for (up to the wait above), bytes: fewer, "
            "larger batches under a moderate load"
        ),
    )
    commit_interval: float = Field(
        default=1.0,
        alias="OMNIHUB_COMMIT_INTERVAL",
        description="Seconds between faust offset commits",
    )
    worker_session_timeout: float = Field(
        default=6.0,
        alias="OMNIHUB_SESSION_TIMEOUT",
        description="Consumer group session timeout of the faust workers, seconds",
    )
    channels: str = Field(
        default="", alias="OMNIHUB_CHANNELS", description="adapters to serve; empty: all"
    )
    otlp_endpoint: str | None = Field(
        default=None,
        alias="OTEL_EXPORTER_OTLP_ENDPOINT",
        description=(
            "OpenTelemetry OTLP/HTTP endpoint (e.g. `http://otel-collector:4318`) every component"
            " exports its trace spans to (docs/operations.md#traces); unset: no spans, the"
            " `ce_traceparent` headers are only carried through"
        ),
    )

    blob_dir_setting: Path | None = Field(
        default=None,
        alias="OMNIHUB_BLOB_DIR",
        description=(
            "Where the files that arrive with messages (email attachments) are kept; every"
            " process that receives or serves them must see the same directory (a shared"
            " volume). Unset: `blobs` under OMNIHUB_DATA_DIR. Ignored with OMNIHUB_BLOB_S3_URL"
        ),
    )
    blob_s3_url: str | None = Field(
        default=None,
        alias="OMNIHUB_BLOB_S3_URL",
        description=(
            "Keep the blobs in S3 instead, as `s3://bucket/optional/prefix` (objects"
            " `<prefix>/<event id>/<n>`): what processes without a shared volume need (each"
            " Kubernetes pod has its own data directory). Credentials: the standard AWS chain"
            " (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, IRSA, instance role)"
        ),
    )
    blob_s3_endpoint: str | None = Field(
        default=None,
        alias="OMNIHUB_BLOB_S3_ENDPOINT",
        description=(
            "The S3 endpoint URL of an S3-compatible store (SeaweedFS, MinIO, e.g."
            " `http://seaweedfs:8333`; addressed path-style); unset: AWS S3"
        ),
    )
    blob_s3_region: str | None = Field(
        default=None,
        alias="OMNIHUB_BLOB_S3_REGION",
        description=(
            "The region the S3 blob store's requests are signed for; unset: botocore's"
            " (`AWS_DEFAULT_REGION`, the AWS config file's `region`)"
        ),
    )

    @property
    def blob_dir(self) -> Path:
        """The blob store's directory."""
        return self.blob_dir_setting or self.data_dir / "blobs"

    def channel_list(self) -> list[str]:
        """The adapters to serve, from OMNIHUB_CHANNELS (comma-separated; empty means all)."""
        return [name.strip() for name in self.channels.split(",") if name.strip()]

    def runtime_path(self) -> Path:
        """Where `omnihub up` records the servers it started, for other commands."""
        return self.data_dir / RUNTIME_FILE

    def with_runtime(self) -> Settings:
        """Fill unset server addresses from a running `omnihub up` (runtime.json)."""
        path = self.runtime_path()
        if (self.kafka_bootstrap_servers and self.database_url) or not path.exists():
            return self
        runtime = json.loads(path.read_text())
        return self.model_copy(
            update={
                "kafka_bootstrap_servers": self.kafka_bootstrap_servers
                or runtime.get("kafka_bootstrap_servers"),
                "database_url": self.database_url or runtime.get("database_url"),
            }
        )

    def require_servers(self) -> tuple[str, str]:
        """Return (bootstrap servers, database URL) or explain which one is missing."""
        settings = self.with_runtime()
        if not settings.kafka_bootstrap_servers:
            raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set and no `omnihub up` is running")
        if not settings.database_url:
            raise RuntimeError("DATABASE_URL is not set and no `omnihub up` is running")
        return settings.kafka_bootstrap_servers, settings.database_url


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process's settings, read once."""
    return Settings()
